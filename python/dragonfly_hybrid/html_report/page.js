"use strict";
// The report page's behaviour: filters that hide rows, and the SVG charts. Data comes from the JSON
// blob; every string is put in the page as text (textContent), never as markup, and printable.
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const data = JSON.parse(document.getElementById("report-data").textContent);

  // The tables' printable form (report.printable on the server): control, format (bidi overrides,
  // zero-width) and separator characters other than the space drawn as escapes, so a name cannot
  // reorder or hide what is drawn beside it.
  const INVISIBLE = /(?! )[\p{C}\p{Z}]/u;
  const NAMED_ESCAPES = new Map([["\n", "\\n"], ["\r", "\\r"], ["\t", "\\t"]]);

  function escapedChar(char) {
    if (NAMED_ESCAPES.has(char)) return NAMED_ESCAPES.get(char);
    const code = char.codePointAt(0), hex = code.toString(16);
    if (code <= 0xff) return "\\x" + hex.padStart(2, "0");
    return code <= 0xffff ? "\\u" + hex.padStart(4, "0") : "\\U" + hex.padStart(8, "0");
  }

  function printable(text) {
    if (!INVISIBLE.test(text)) return text;
    return Array.from(text, (char) => (INVISIBLE.test(char) ? escapedChar(char) : char)).join("");
  }

  function svgElement(name, attributes, text) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, String(value));
    if (text !== undefined) element.textContent = text;
    return element;
  }

  function tooltip(element, text) {
    element.appendChild(svgElement("title", {}, text));
    return element;
  }

  // The drawing's units are the element's pixels, so that labels keep their font size at any width.
  function pixelWidth(svg) {
    return Math.max(320, Math.round(svg.getBoundingClientRect().width) || 640);
  }

  // Horizontal bars: one per rule, its length the number of releases it matched.
  function drawRuleChart(svg, counts) {
    const rowHeight = 22, width = pixelWidth(svg), labelWidth = Math.min(260, width * 0.45);
    const barRoom = width - labelWidth - 40;
    const max = Math.max(1, ...counts.map((c) => c.releases));
    svg.setAttribute("viewBox", `0 0 ${width} ${counts.length * rowHeight + 4}`);
    counts.forEach((c, index) => {
      const y = index * rowHeight + 2, rule = printable(c.rule);
      const label = rule.length > 40 ? rule.slice(0, 39) + "…" : rule;
      svg.appendChild(svgElement("text", { x: labelWidth - 6, y: y + 15, "text-anchor": "end" }, label));
      const length = Math.max(2, (c.releases / max) * barRoom);
      svg.appendChild(tooltip(
        svgElement("rect", { class: "bar", x: labelWidth, y: y + 3, width: length, height: rowHeight - 6, rx: 2 }),
        `${rule}: ${c.releases} release(s), ${c.files} file(s), weight ${c.weight}`));
      svg.appendChild(svgElement("text", { x: labelWidth + length + 4, y: y + 15 }, String(c.releases)));
    });
  }

  // Columns per day: scans, with the scans that had findings drawn over them.
  function drawDayChart(svg, days) {
    const width = pixelWidth(svg), height = 180, bottom = 20, top = 16;
    const step = width / days.length, columnWidth = Math.max(2, Math.min(36, step * 0.7));
    const max = Math.max(1, ...days.map((d) => d.scans));
    const scale = (value) => (value / max) * (height - bottom - top);
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    svg.appendChild(svgElement("line", { class: "axis", x1: 0, x2: width, y1: height - bottom, y2: height - bottom }));
    days.forEach((d, index) => {
      const x = index * step + (step - columnWidth) / 2;
      for (const [value, cls] of [[d.scans, "bar"], [d.findings, "bar-findings"]]) {
        const h = Math.max(value > 0 ? 1 : 0, scale(value));
        svg.appendChild(tooltip(
          svgElement("rect", { class: cls, x, y: height - bottom - h, width: columnWidth, height: h }),
          `${printable(d.day)}: ${d.scans} scan(s), ${d.findings} with findings`));
      }
    });
    const legend = [["bar", "scans"], ["bar-findings", "with findings"]];
    legend.forEach(([cls, text], index) => {
      const x = width - 210 + index * 90;
      svg.appendChild(svgElement("rect", { class: `${cls} legend`, x, y: 0, width: 10, height: 10 }));
      svg.appendChild(svgElement("text", { x: x + 14, y: 9 }, text));
    });
    const labels = days.length > 1 ? [0, days.length - 1] : [0];
    for (const index of labels) {
      const anchor = labels.length > 1 && index === days.length - 1 ? "end" : "start";
      const x = anchor === "end" ? width : index * step;
      svg.appendChild(svgElement("text", { x, y: height - 5, "text-anchor": anchor }, printable(days[index].day)));
    }
  }

  // A row is shown when it matches the search text, the verdict and the rule (rows of the per-rule
  // table have no verdict and match every verdict).
  function applyFilters() {
    const query = document.getElementById("search").value.trim().toLowerCase();
    const verdict = document.getElementById("verdict-filter").value;
    const rule = document.getElementById("rule-filter").value;
    for (const section of document.querySelectorAll("main section[id]")) {
      const rows = section.querySelectorAll("tbody tr");
      if (rows.length === 0) continue;
      let shown = 0;
      for (const row of rows) {
        const rules = JSON.parse(row.dataset.rules || "[]");
        const visible =
          (!query || row.textContent.toLowerCase().includes(query)) &&
          (!verdict || !row.dataset.verdict || row.dataset.verdict === verdict) &&
          (!rule || rules.includes(rule));
        row.hidden = !visible;
        if (visible) shown += 1;
      }
      const count = section.querySelector(".count");
      count.textContent = shown === rows.length ? String(rows.length) : `${shown} of ${rows.length}`;
      section.querySelector(".none-shown").hidden = shown > 0;
    }
  }

  // Shown before drawing: a hidden element has no width to draw to.
  const charts = document.getElementById("charts");
  if (charts) charts.hidden = false;
  const ruleChart = document.getElementById("chart-rules");
  if (ruleChart) drawRuleChart(ruleChart, data.rule_counts);
  const dayChart = document.getElementById("chart-days");
  if (dayChart) drawDayChart(dayChart, data.days);

  document.getElementById("filters").hidden = false;
  for (const id of ["search", "verdict-filter", "rule-filter"]) {
    document.getElementById(id).addEventListener("input", applyFilters);
  }
})();
