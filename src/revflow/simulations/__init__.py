"""Simulation: a version run for one contact on a simulated clock, storing and sending nothing
(SPEC §11 "simulate")."""
