/* nanobench leaderboard: filters (search box, preset, hardware, GPU count, price kind, availability,
   date range) and sortable columns. Progressive enhancement only: without JavaScript the form stays
   hidden, every row is shown in cost order and the column headings are plain text. Safe under the
   site's strict Content-Security-Policy: no inline script, no eval, no network access, no globals
   besides this IIFE. */
(function () {
  "use strict";

  var form = document.getElementById("filters");
  var boards = Array.prototype.slice.call(document.querySelectorAll("section.board"));
  var status = document.getElementById("filter-status");

  /* ------------------------------------------------------------------ sorting */

  function sortValue(row, key, type) {
    var raw = row.getAttribute("data-sort-" + key);
    if (raw === null || raw === "") {
      return null; /* missing values always sort last */
    }
    if (type === "number") {
      var n = parseFloat(raw);
      return isNaN(n) ? null : n;
    }
    return raw;
  }

  function compare(a, b, type) {
    if (type === "number") {
      return a - b;
    }
    return a < b ? -1 : a > b ? 1 : 0;
  }

  function sortBoard(board, th, direction) {
    var key = th.getAttribute("data-sort-key");
    var type = th.getAttribute("data-sort-type") || "text";
    var tbody = board.querySelector("tbody");
    var rows = Array.prototype.slice.call(tbody.querySelectorAll("tr.lb-row"));
    var sign = direction === "descending" ? -1 : 1;
    rows.sort(function (ra, rb) {
      var a = sortValue(ra, key, type);
      var b = sortValue(rb, key, type);
      if (a === null && b === null) {
        return compare(sortValue(ra, "rank", "number"), sortValue(rb, "rank", "number"), "number");
      }
      if (a === null) {
        return 1;
      }
      if (b === null) {
        return -1;
      }
      var order = sign * compare(a, b, type);
      return order !== 0 ? order : compare(sortValue(ra, "rank", "number"), sortValue(rb, "rank", "number"), "number");
    });
    var empty = tbody.querySelector("tr.no-match");
    rows.forEach(function (row) {
      tbody.insertBefore(row, empty);
    });
    board.querySelectorAll("th[data-sort-key]").forEach(function (other) {
      if (other !== th) {
        other.removeAttribute("aria-sort");
      }
    });
    th.setAttribute("aria-sort", direction);
  }

  /* phones: the header row is hidden (rows become cards), so each board gets a "Sort by" list */
  function addSortSelect(board) {
    var heads = Array.prototype.slice.call(board.querySelectorAll("th[data-sort-key]"));
    var wrap = board.querySelector(".table-wrap");
    if (!heads.length || !wrap) {
      return;
    }
    var label = document.createElement("label");
    label.className = "mobile-sort";
    label.appendChild(document.createTextNode("Sort by "));
    var select = document.createElement("select");
    select.setAttribute("data-sort-select", "");
    heads.forEach(function (th, index) {
      var name = th.getAttribute("data-sort-label") || th.textContent.trim();
      var first = th.getAttribute("data-sort-first") || "ascending";
      var second = first === "ascending" ? "descending" : "ascending";
      [first, second].forEach(function (direction) {
        var option = document.createElement("option");
        option.value = index + ":" + direction;
        option.textContent = name + (direction === "ascending" ? " \u2191" : " \u2193");
        select.appendChild(option);
      });
    });
    select.addEventListener("change", function () {
      var parts = select.value.split(":");
      sortBoard(board, heads[Number(parts[0])], parts[1]);
    });
    label.appendChild(select);
    board.insertBefore(label, wrap);
  }

  boards.forEach(function (board) {
    addSortSelect(board);
    board.querySelectorAll("th[data-sort-key]").forEach(function (th) {
      var button = th.querySelector("button.sort");
      if (!button) {
        return;
      }
      button.addEventListener("click", function () {
        var current = th.getAttribute("aria-sort");
        var first = th.getAttribute("data-sort-first") || "ascending";
        var next = current ? (current === "ascending" ? "descending" : "ascending") : first;
        sortBoard(board, th, next);
      });
    });
    board.classList.add("sortable");
  });

  /* ------------------------------------------------------------------ filters */

  if (!form) {
    return;
  }
  var selects = Array.prototype.slice.call(form.querySelectorAll("select[data-filter]"));
  var boardSelect = form.querySelector("select[data-board-filter]");
  var search = form.querySelector("input[data-search]");
  var dateFrom = form.querySelector("input[data-date-from]");
  var dateTo = form.querySelector("input[data-date-to]");

  function currentFilters() {
    var active = {};
    selects.forEach(function (select) {
      if (select.value !== "") {
        active[select.getAttribute("data-filter")] = select.value;
      }
    });
    return active;
  }

  function rowMatches(row, active, words, from, to) {
    var exact = Object.keys(active).every(function (key) {
      return row.getAttribute("data-" + key) === active[key];
    });
    if (!exact) {
      return false;
    }
    var text = row.getAttribute("data-search-text") || "";
    if (!words.every(function (word) { return text.indexOf(word) !== -1; })) {
      return false;
    }
    var date = row.getAttribute("data-date") || "";
    if ((from && (!date || date < from)) || (to && (!date || date > to))) {
      return false;
    }
    return true;
  }

  function apply() {
    var active = currentFilters();
    var words = search ? search.value.toLowerCase().split(/\s+/).filter(function (w) { return w !== ""; }) : [];
    var from = dateFrom ? dateFrom.value : "";
    var to = dateTo ? dateTo.value : "";
    var preset = boardSelect ? boardSelect.value : "";
    var filtering = Object.keys(active).length > 0 || words.length > 0 || from !== "" || to !== "" || preset !== "";
    var shownTotal = 0;
    var total = 0;
    boards.forEach(function (board) {
      var rows = board.querySelectorAll("tr.lb-row");
      var boardOn = preset === "" || board.getAttribute("data-preset") === preset;
      board.hidden = !boardOn;
      var shown = 0;
      rows.forEach(function (row) {
        var match = boardOn && rowMatches(row, active, words, from, to);
        row.hidden = !match;
        if (match) {
          shown += 1;
        }
      });
      total += rows.length;
      shownTotal += shown;
      var counter = board.querySelector(".board-count .shown");
      if (counter) {
        counter.textContent = String(shown);
      }
      var empty = board.querySelector("tr.no-match");
      if (empty) {
        empty.hidden = shown !== 0;
      }
    });
    if (status) {
      status.textContent = filtering ? "showing " + shownTotal + " of " + total + " runs" : "";
    }
  }

  selects.concat(boardSelect ? [boardSelect] : []).forEach(function (select) {
    select.addEventListener("change", apply);
  });
  [search, dateFrom, dateTo].forEach(function (input) {
    if (input) {
      input.addEventListener("input", apply);
      input.addEventListener("change", apply);
    }
  });
  form.addEventListener("reset", function () {
    window.setTimeout(apply, 0);
  });
  form.addEventListener("submit", function (event) {
    event.preventDefault();
  });
  form.hidden = false;
  apply();
})();
