// Injected by tests/integration/pages.rs into a static copy of each page, after axe.min.js. The page runs in
// an iframe of the width under test; this reports to the parent frame, which writes the report
// into its own DOM for `chromium --dump-dom`. No page of the app ever loads this file.
(function () {
  'use strict';

  // JSON with every non-ASCII character and < > & escaped, so it survives --dump-dom unchanged.
  function send(report) {
    var json = JSON.stringify(report).replace(/[<>&\u007f-\uffff]/g, function (c) {
      return '\\u' + ('0000' + c.charCodeAt(0).toString(16)).slice(-4);
    });
    parent.postMessage(json, '*');
  }

  function describe(el) {
    var s = el.outerHTML;
    return s.length > 200 ? s.slice(0, 200) + '…' : s;
  }

  // e.g. "main#main.page.page--medium (0–420 px)"
  function brief(el) {
    var r = el.getBoundingClientRect();
    var classes = Array.prototype.slice.call(el.classList).map(function (c) { return '.' + c; }).join('');
    return el.localName + (el.id ? '#' + el.id : '') + classes + ' (' + Math.round(r.left) + '–' + Math.round(r.right) + ' px)';
  }

  function measure() {
    var doc = document.documentElement;
    var viewport = document.querySelector('meta[name="viewport"]');
    var links = Array.prototype.slice.call(document.querySelectorAll('link[rel="stylesheet"]'));
    var unlabelled = Array.prototype.slice
      .call(document.querySelectorAll('input, select, textarea'))
      .filter(function (el) { return el.type !== 'hidden' && (!el.labels || el.labels.length === 0); })
      .map(describe);
    var wider = Array.prototype.slice
      .call(document.body.querySelectorAll('*'))
      .filter(function (el) { return el.getBoundingClientRect().right > window.innerWidth + 0.5; })
      .slice(0, 5)
      .map(brief);
    return {
      innerWidth: window.innerWidth,
      clientWidth: doc.clientWidth,
      scrollWidth: doc.scrollWidth,
      dark: window.matchMedia('(prefers-color-scheme: dark)').matches,
      viewport: viewport ? viewport.getAttribute('content') : null,
      stylesheets: links.length,
      stylesheetsLoaded: links.filter(function (l) { return l.sheet !== null; }).length,
      unlabelled: unlabelled,
      wider: wider,
      background: getComputedStyle(document.body).backgroundColor,
    };
  }

  try {
    var report = measure();
    axe.run(document, { resultTypes: ['violations'] }).then(
      function (r) {
        report.violations = r.violations.map(function (v) {
          return {
            id: v.id,
            impact: v.impact,
            help: v.help,
            nodes: v.nodes.map(function (n) { return n.target.join(' ') + ' :: ' + n.failureSummary; }),
          };
        });
        send(report);
      },
      function (e) { send({ error: 'axe.run failed: ' + e }); }
    );
  } catch (e) {
    send({ error: 'check.js failed: ' + e });
  }
})();
