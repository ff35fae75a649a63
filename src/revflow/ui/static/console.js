// revflow console: draws workflow graphs with Graphviz (vendored @viz-js/viz) and asks before
// forms marked data-confirm. Pages work without it; it only adds.
"use strict";

window.revflow = window.revflow || {};

(function () {
  let vizPromise = null;

  function loadViz() {
    if (vizPromise) return vizPromise;
    vizPromise = new Promise(function (resolve, reject) {
      if (window.Viz) return resolve(window.Viz.instance());
      const script = document.createElement("script");
      script.src = "/ui/static/vendor/viz-js/viz-global.js";
      script.onload = function () { resolve(window.Viz.instance()); };
      script.onerror = function () { reject(new Error("the graph library did not load")); };
      document.head.appendChild(script);
    });
    return vizPromise;
  }

  // Draw DOT text into a figure.graph; answers a promise that settles when it is drawn.
  function drawGraph(figure, dot) {
    const canvas = figure.querySelector(".graph-canvas");
    if (!dot) {
      canvas.innerHTML = '<p class="muted">Nothing to draw yet.</p>';
      return Promise.resolve();
    }
    return loadViz().then(function (viz) {
      const svg = viz.renderSVGElement(dot);
      svg.setAttribute("focusable", "false");
      canvas.replaceChildren(svg);
      figure.dataset.drawn = "true";
    }).catch(function (error) {
      canvas.innerHTML = "";
      const p = document.createElement("p");
      p.className = "error-text";
      p.textContent = "The graph could not be drawn: " + error.message;
      canvas.appendChild(p);
    });
  }

  window.revflow.drawGraph = drawGraph;
  window.revflow.csrf = function () {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.content : "";
  };

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("figure.graph[data-dot]").forEach(function (figure) {
      drawGraph(figure, figure.dataset.dot);
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) event.preventDefault();
      });
    });
  });
})();
