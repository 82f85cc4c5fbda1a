/* leadml rep report: sort, filter, search, expand. Reads only data-* attributes already in the
   page and writes only textContent, attributes and classes, so lead data is never parsed as HTML. */
(function () {
  'use strict';
  var table = document.getElementById('leads');
  var empty = document.getElementById('empty');
  var bodies = Array.prototype.slice.call(table.querySelectorAll('tbody.lead'));
  var headers = Array.prototype.slice.call(table.querySelectorAll('th[data-key]'));
  var q = document.getElementById('q');
  var stage = document.getElementById('stage');
  var boxes = Array.prototype.slice.call(document.querySelectorAll('#tier-filter input'));
  var cards = Array.prototype.slice.call(document.querySelectorAll('.tier[data-only]'));
  // One call list per question: leads to qualify, prospects to advance. Each has its own lede
  // and tier cards (its own model's rates); the list switch shows one at a time.
  var lists = Array.prototype.slice.call(document.querySelectorAll('.list[data-list]'));
  var shownEl = document.getElementById('shown');
  var matchingEl = document.getElementById('matching');
  var more = document.getElementById('more');
  // Only the first PAGE matching leads are laid out: a browser lays out a table of thousands of
  // rows slowly, and a rep works from the top of the list anyway.
  var PAGE = parseInt(table.dataset.page, 10) || 200;
  var limit = PAGE;
  var expand = document.getElementById('expand');
  var NUMERIC = { rank: true, score: true, change: true, p: true };
  var DESC_FIRST = { score: true, change: true, p: true };
  var current = { key: 'rank', dir: 'asc' };

  function apply(keepLimit) {
    if (keepLimit !== true) limit = PAGE;
    var text = q.value.trim().toLowerCase();
    var tiers = {};
    boxes.forEach(function (b) { if (b.checked) tiers[b.value] = true; });
    var s = stage.value;
    lists.forEach(function (l) { l.hidden = l.dataset.list !== s; });
    var visible = [], matching = 0;
    bodies.forEach(function (b) {
      var d = b.dataset;
      var ok = (!text || d.search.indexOf(text) >= 0) && tiers[d.tier] === true && (!s || d.stage === s);
      if (ok) matching += 1;
      var show = ok && matching <= limit;
      if (b.hidden === show) b.hidden = !show;  // untouched rows keep their layout
      if (show) visible.push(b);
    });
    // Hidden rows may sit anywhere; only the shown ones need to be in sort order, and moving a
    // few hundred rows is much cheaper than moving thousands. They go first, under the header.
    var frag = document.createDocumentFragment();
    visible.forEach(function (b) { frag.appendChild(b); });
    table.insertBefore(frag, table.tHead.nextSibling);
    shownEl.textContent = visible.length.toLocaleString('en-US');
    matchingEl.textContent = matching.toLocaleString('en-US');
    more.hidden = matching <= limit;
    more.textContent = 'Show ' + Math.min(PAGE, matching - limit) + ' more';
    empty.hidden = matching > 0;
    var only = boxes.filter(function (b) { return b.checked; });
    cards.forEach(function (c) {
      c.classList.toggle('active', only.length === 1 && only[0].value === c.dataset.only);
    });
  }

  function value(b, key) {
    var v = b.dataset[key];
    return NUMERIC[key] ? parseFloat(v) : v;
  }

  function sortBy(key, dir) {
    var sign = dir === 'asc' ? 1 : -1;
    bodies.sort(function (a, b) {
      var x = value(a, key), y = value(b, key), c;
      if (NUMERIC[key]) {
        var xn = isNaN(x), yn = isNaN(y);
        // Missing values (a new lead has no change) go last in either direction.
        if (xn || yn) { c = xn === yn ? 0 : (xn ? 1 : -1); }
        else { c = sign * (x - y); }
      } else {
        c = sign * x.localeCompare(y, undefined, { sensitivity: 'base', numeric: true });
      }
      return c || (parseFloat(a.dataset.rank) - parseFloat(b.dataset.rank));
    });
    apply(true);
    headers.forEach(function (th) {
      th.setAttribute('aria-sort', th.dataset.key !== key ? 'none' : (dir === 'asc' ? 'ascending' : 'descending'));
    });
    current = { key: key, dir: dir };
  }

  headers.forEach(function (th) {
    th.querySelector('button').addEventListener('click', function () {
      var key = th.dataset.key;
      var dir = current.key === key ? (current.dir === 'asc' ? 'desc' : 'asc') : (DESC_FIRST[key] ? 'desc' : 'asc');
      sortBy(key, dir);
    });
  });

  function toggle(b, open) {
    var o = open === undefined ? !b.classList.contains('open') : open;
    b.classList.toggle('open', o);
    b.querySelector('tr.row').setAttribute('aria-expanded', o ? 'true' : 'false');
  }

  bodies.forEach(function (b) {
    var row = b.querySelector('tr.row');
    row.addEventListener('click', function () { toggle(b); });
    row.addEventListener('keydown', function (e) {
      if (e.key === 'Enter' || e.key === ' ') { e.preventDefault(); toggle(b); }
    });
  });

  expand.addEventListener('click', function () {
    var open = expand.getAttribute('aria-pressed') !== 'true';
    bodies.forEach(function (b) { if (!b.hidden) toggle(b, open); });
    expand.setAttribute('aria-pressed', open ? 'true' : 'false');
    expand.textContent = open ? 'Collapse all' : 'Expand all';
  });

  cards.forEach(function (c) {
    c.addEventListener('click', function () {
      var alreadyOnly = c.classList.contains('active');
      boxes.forEach(function (b) { b.checked = alreadyOnly || b.value === c.dataset.only; });
      apply();
    });
  });

  // "Print this lead": mark the lead, print, unmark (classes only; CSS hides the rest).
  bodies.forEach(function (b) {
    var btn = b.querySelector('button.print-one');
    if (!btn) return;
    btn.addEventListener('click', function (e) {
      e.stopPropagation();
      b.classList.add('printing');
      document.body.classList.add('print-one');
      window.print();
    });
  });
  window.addEventListener('afterprint', function () {
    document.body.classList.remove('print-one');
    bodies.forEach(function (b) { b.classList.remove('printing'); });
  });

  more.addEventListener('click', function () {
    limit += PAGE;
    apply(true);
  });

  [q, stage].concat(boxes).forEach(function (el) {
    el.addEventListener('input', function () { apply(); });
    el.addEventListener('change', function () { apply(); });
  });
  apply();
})();
