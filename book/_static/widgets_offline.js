// Jupyter widgets in the static book without a network (book/_config.yml nb_ipywidgets_js loads, in order,
// widgets/require.js, this file and widgets/embed-amd.js; `make widgets` vendors them from npm).
// The html-manager asks require.js for a widget's module before it tries a CDN, so require.js is told where the
// vendored modules are: next to this file, whatever the depth of the page.
(function () {
  var src = document.currentScript && document.currentScript.src;
  var base = (src ? src.replace(/[^/]*$/, "") : "_static/") + "widgets/";
  window.requirejs.config({ paths: { anywidget: base + "anywidget/index" } });
  // The widgets typeset their labels with MathJax 2's MathJax.Hub.Queue; the book has MathJax 3 (no Hub).
  window.addEventListener("load", function () {
    if (window.MathJax && !window.MathJax.Hub) {
      window.MathJax.Hub = { Queue: function () {} };
    }
  });
})();
