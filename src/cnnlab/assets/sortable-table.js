// cnnlab report: sort a table.sortable by clicking a header (again: the other way), and
// filter its rows by words typed above it. Without JavaScript the table stays as written.
// A column sorts by number when every cell that is not "-" starts with one ("99.12 ± 0.05",
// "1,234", "[98.9, 99.2]", "8.60*"); else by text, digits compared as numbers. Cells without
// a value go last either way.
(() => {
  const MISSING = new Set(["", "-"]);
  const number = (text) => parseFloat(text.replace(/^\[/, "").replace(/,/g, ""));
  const key = (cell, numeric) => {
    const text = cell.textContent.trim();
    if (MISSING.has(text)) return null;
    return numeric ? number(text) : text;
  };
  const isNumeric = (rows, col) =>
    rows.every((row) => {
      const text = row.cells[col].textContent.trim();
      return MISSING.has(text) || !Number.isNaN(number(text));
    });
  const compare = (x, y, ascending) => {
    if (x === null || y === null) return x === y ? 0 : x === null ? 1 : -1;
    const order =
      typeof x === "number" ? x - y : x.localeCompare(y, undefined, { numeric: true });
    return ascending ? order : -order;
  };
  for (const table of document.querySelectorAll("table.sortable")) {
    const head = table.tHead.rows[0];
    const body = table.tBodies[0];
    const sortBy = (th, col) => {
      const ascending = th.getAttribute("aria-sort") !== "ascending";
      for (const other of head.cells) other.setAttribute("aria-sort", "none");
      th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
      const rows = Array.from(body.rows);
      const numeric = isNumeric(rows, col);
      rows.sort((a, b) => compare(key(a.cells[col], numeric), key(b.cells[col], numeric), ascending));
      body.append(...rows);
    };
    Array.from(head.cells).forEach((th, col) => {
      th.tabIndex = 0;
      th.title = "sort by this column (click again: the other way)";
      th.setAttribute("aria-sort", "none");
      th.addEventListener("click", () => sortBy(th, col));
      th.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(th, col);
        }
      });
    });
    const filter = document.createElement("input");
    filter.type = "search";
    filter.className = "table-filter";
    filter.placeholder = "filter: words every shown row contains (e.g. d3 bn)";
    const shown = document.createElement("span");
    shown.className = "note";
    filter.addEventListener("input", () => {
      const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
      let count = 0;
      for (const row of body.rows) {
        const text = row.textContent.toLowerCase();
        row.hidden = !words.every((word) => text.includes(word));
        count += row.hidden ? 0 : 1;
      }
      shown.textContent = words.length ? ` ${count} of ${body.rows.length} rows` : "";
    });
    table.before(filter, shown);
  }
})();
