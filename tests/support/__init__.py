"""What tests share and that is not a test: the API walk's route table, engines, servers,
workers and workloads. Fixtures live in the conftest files; test modules import only from here.
"""
