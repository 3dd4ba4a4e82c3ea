// The dashboards' only script: charts (uPlot), sortable tables, filter forms and partial
// updates (each panel re-fetched from /dashboard/<panel> every data-refresh seconds).
(function () {
  "use strict";
  var COLORS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

  function charts(root) {
    root.querySelectorAll("[data-chart]").forEach(function (el) {
      var spec = JSON.parse(el.dataset.chart);
      el.textContent = "";
      var data = [spec.x].concat(spec.series.map(function (s) { return s.values; }));
      var series = [{}].concat(spec.series.map(function (s, i) {
        return { label: s.label, stroke: COLORS[i % COLORS.length], width: 2,
                 points: { show: spec.x.length < 60 } };
      }));
      new uPlot({ width: Math.max(280, el.clientWidth || 560), height: 180, series: series,
                  scales: { x: spec.range ? { time: spec.time, range: spec.range } : { time: spec.time } } },
                 data, el);
      el.dataset.points = String(spec.x.length);
    });
  }

  function key(row, col) {
    var cell = row.cells[col];
    var raw = cell.dataset.value !== undefined ? cell.dataset.value : cell.textContent.trim();
    var n = Number(raw);
    return raw !== "" && !isNaN(n) ? n : raw;
  }

  function sortTable(table, col, dir) {
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (a, b) {
      var x = key(a, col), y = key(b, col);
      var r = (typeof x === "number" && typeof y === "number") ? x - y
        : String(x).localeCompare(String(y));
      return dir === "ascending" ? r : -r;
    });
    rows.forEach(function (r) { body.appendChild(r); });
    table.querySelectorAll("th").forEach(function (h, i) {
      if (i === col) { h.setAttribute("aria-sort", dir); } else { h.removeAttribute("aria-sort"); }
    });
    table.dataset.sortCol = String(col);
    table.dataset.sortDir = dir;
  }

  function sortables(root, remembered) {
    root.querySelectorAll("table.sortable").forEach(function (table) {
      table.querySelectorAll("th button").forEach(function (button) {
        button.addEventListener("click", function () {
          var th = button.closest("th");
          var col = Array.prototype.indexOf.call(th.parentNode.children, th);
          var dir = th.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending";
          sortTable(table, col, dir);
        });
      });
      if (remembered && remembered[table.id]) {
        sortTable(table, remembered[table.id][0], remembered[table.id][1]);
      }
    });
  }

  function panelUrl(name, query) {
    return "/dashboard/" + name + (query ? "?" + query : "");
  }

  async function load(section, query) {
    var response = await fetch(panelUrl(section.dataset.partial, query));
    if (!response.ok) { return false; }
    var remembered = {};
    section.querySelectorAll("table.sortable[id]").forEach(function (t) {
      if (t.dataset.sortCol) { remembered[t.id] = [Number(t.dataset.sortCol), t.dataset.sortDir]; }
    });
    section.innerHTML = await response.text();
    init(section, remembered);
    return true;
  }

  function formQuery(form) {
    var params = new URLSearchParams();
    new FormData(form).forEach(function (value, name) { if (value !== "") { params.set(name, value); } });
    return params.toString();
  }

  function forms(root) {
    root.querySelectorAll("form[data-target]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        event.preventDefault();
        var query = formQuery(form);
        history.replaceState(null, "", query ? "?" + query : location.pathname);
        var target = document.getElementById(form.dataset.target);
        load(target, query);
      });
    });
    root.querySelectorAll("button[data-fetch]").forEach(function (button) {
      button.addEventListener("click", async function () {
        var out = document.getElementById(button.dataset.output);
        out.textContent = "checking…";
        var response = await fetch(panelUrl(button.dataset.fetch, location.search.slice(1)));
        out.innerHTML = await response.text();
      });
    });
  }

  function init(root, remembered) {
    charts(root);
    sortables(root, remembered);
    forms(root);
  }

  init(document, null);
  document.querySelectorAll("section[data-partial]").forEach(function (section) {
    var seconds = Number(section.dataset.refresh);
    if (!(seconds > 0)) { return; }
    setInterval(function () {
      // Not while hidden, nor under a keyboard user's focus (replacing it would lose it).
      if (document.hidden || section.contains(document.activeElement)) { return; }
      load(section, location.search.slice(1)).catch(function () {});
    }, seconds * 1000);
  });
})();
