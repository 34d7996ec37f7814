/*
 * Postloan progressive enhancement. Pages stay usable without this file, but forms
 * then submit without confirmation and charts are not drawn.
 *
 * 1. Confirmation before submit: <form data-confirm="Close this alert?"> shows a
 *    confirm() dialog before the form is submitted. A submit button may carry its
 *    own data-confirm, which takes precedence over the form's.
 * 2. Charts: a <canvas> becomes a Chart.js chart when it has either
 *      data-chart='{"type": "bar", "data": {...}, "options": {...}}'  (inline JSON), or
 *      data-chart-source="element-id"  (the id of a {{ value|json_script:"element-id" }} script).
 *    Give the canvas role="img" and an aria-label that states what the chart shows,
 *    and put the figures in a table nearby, because a canvas is opaque to screen readers.
 *
 * 3. Focus after an in-place update: an htmx target with data-focus-after-swap and
 *    tabindex="-1" receives the focus once its new content has settled.
 *
 * Sorting and filtering are done by the server, never here.
 */
(function () {
  "use strict";

  // Capture phase on document runs before any listener on the form itself,
  // including htmx's, so stopping the event here also stops an hx-post request.
  document.addEventListener(
    "submit",
    function (event) {
      var form = event.target;
      var submitter = event.submitter;
      var message =
        (submitter && submitter.getAttribute("data-confirm")) ||
        form.getAttribute("data-confirm");
      if (message && !window.confirm(message)) {
        event.preventDefault();
        event.stopPropagation();
      }
    },
    true
  );

  function readChartConfig(canvas) {
    var sourceId = canvas.getAttribute("data-chart-source");
    if (sourceId) {
      var source = document.getElementById(sourceId);
      if (!source) {
        throw new Error(
          'no element with id "' + sourceId + '" for data-chart-source. ' +
            'Render the config with {{ value|json_script:"' + sourceId + '" }}.'
        );
      }
      return JSON.parse(source.textContent);
    }
    return JSON.parse(canvas.getAttribute("data-chart"));
  }

  function initCharts(root) {
    var selector = "canvas[data-chart], canvas[data-chart-source]";
    var canvases = Array.prototype.slice.call(root.querySelectorAll(selector));
    // htmx:load passes the swapped element itself, which may be the canvas.
    if (root.matches && root.matches(selector)) {
      canvases.push(root);
    }
    if (canvases.length === 0) {
      return;
    }
    if (typeof window.Chart === "undefined") {
      console.error(
        "postloan.js: Chart.js is not loaded, so " + canvases.length +
          " chart(s) were not drawn. Load chartjs/chart.umd.min.js before postloan.js."
      );
      return;
    }

    canvases.forEach(function (canvas) {
      // htmx:load fires again for swapped content, so skip canvases that already have a chart.
      if (window.Chart.getChart(canvas)) {
        return;
      }
      try {
        new window.Chart(canvas, readChartConfig(canvas));
      } catch (error) {
        console.error("postloan.js: failed to draw the chart on canvas #" + (canvas.id || "(no id)") + ":", error);
      }
    });
  }

  function configureChartDefaults() {
    if (typeof window.Chart === "undefined") {
      return;
    }
    var bodyStyle = window.getComputedStyle(document.body);
    window.Chart.defaults.font.family = bodyStyle.fontFamily;
    window.Chart.defaults.color = bodyStyle.color;
    if (window.matchMedia("(prefers-reduced-motion: reduce)").matches) {
      window.Chart.defaults.animation = false;
    }
  }

  function start() {
    configureChartDefaults();
    initCharts(document);
    // Content that htmx swaps in may contain charts too.
    document.body.addEventListener("htmx:load", function (event) {
      initCharts(event.detail.elt);
    });
    // A panel replaced in place takes the keyboard focus back, so keyboard and
    // screen-reader users stay where they were working instead of at the page top.
    document.body.addEventListener("htmx:afterSettle", function (event) {
      var target = event.detail.target;
      var panel = target && target.id ? document.getElementById(target.id) : null;
      if (panel && panel.hasAttribute("data-focus-after-swap")) {
        panel.focus();
      }
    });
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
