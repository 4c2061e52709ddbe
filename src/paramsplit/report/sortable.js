// Click (or Enter on) a column header to sort its table; again to reverse. Cells sort by
// their data-sort value where they have one (numbers: '98.6 ± 0.3' sorts as 98.6), else by
// their text. Cells with an empty data-sort were not measured and stay last either way.
(function () {
  "use strict";

  function sortKey(row, column) {
    var cell = row.cells[column];
    return cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
  }

  function compare(x, y) {
    var a = Number(x);
    var b = Number(y);
    if (!isNaN(a) && !isNaN(b)) {
      return a - b;
    }
    return x.localeCompare(y, undefined, { numeric: true });
  }

  function sortBy(table, header, column) {
    var ascending = header.getAttribute("aria-sort") !== "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (cell) {
      cell.removeAttribute("aria-sort");
    });
    header.setAttribute("aria-sort", ascending ? "ascending" : "descending");
    var body = table.tBodies[0];
    var rows = Array.prototype.slice.call(body.rows);
    rows.sort(function (first, second) {
      var x = sortKey(first, column);
      var y = sortKey(second, column);
      if (x === "" || y === "") {
        return (x === "") - (y === "");
      }
      return ascending ? compare(x, y) : compare(y, x);
    });
    rows.forEach(function (row) {
      body.appendChild(row);
    });
  }

  document.querySelectorAll("table.sortable").forEach(function (table) {
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (header, column) {
      header.tabIndex = 0;
      header.title = "Sort by " + header.textContent;
      header.addEventListener("click", function () {
        sortBy(table, header, column);
      });
      header.addEventListener("keydown", function (event) {
        if (event.key === "Enter" || event.key === " ") {
          event.preventDefault();
          sortBy(table, header, column);
        }
      });
    });
  });
})();
