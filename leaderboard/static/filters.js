/* nanobench leaderboard filters: hide rows that do not match the selected hardware, GPU count and
   price kind. Progressive enhancement only: without JavaScript the form stays hidden and every row
   is shown. No network access, no globals besides this IIFE. */
(function () {
  "use strict";

  var form = document.getElementById("filters");
  if (!form) {
    return;
  }
  var selects = Array.prototype.slice.call(form.querySelectorAll("select[data-filter]"));
  var status = document.getElementById("filter-status");

  function currentFilters() {
    var active = {};
    selects.forEach(function (select) {
      if (select.value !== "") {
        active[select.getAttribute("data-filter")] = select.value;
      }
    });
    return active;
  }

  function rowMatches(row, active) {
    return Object.keys(active).every(function (key) {
      return row.getAttribute("data-" + key) === active[key];
    });
  }

  function apply() {
    var active = currentFilters();
    var shownTotal = 0;
    var total = 0;
    document.querySelectorAll("section.board").forEach(function (board) {
      var shown = 0;
      var rows = board.querySelectorAll("tr.lb-row");
      rows.forEach(function (row) {
        var match = rowMatches(row, active);
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
      status.textContent = Object.keys(active).length ? "showing " + shownTotal + " of " + total + " runs" : "";
    }
  }

  selects.forEach(function (select) {
    select.addEventListener("change", apply);
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
