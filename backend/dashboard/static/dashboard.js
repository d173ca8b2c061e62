// Interlude dashboard: the inbox's poll for new alerts and the service-level countdowns.
// Served from the package (CSP script-src 'self'); no inline script, no third-party code.
(function () {
  "use strict";

  function describe(minutes) {
    minutes = Math.abs(minutes);
    var days = Math.floor(minutes / 1440);
    var hours = Math.floor((minutes % 1440) / 60);
    var mins = minutes % 60;
    if (days) { return days + " d " + hours + " h"; }
    if (hours) { return hours + " h " + (mins < 10 ? "0" : "") + mins + " min"; }
    return mins + " min";
  }

  function tickCountdowns(root) {
    var now = Date.now();
    root.querySelectorAll(".sla[data-due]").forEach(function (el) {
      var left = Math.floor((Date.parse(el.getAttribute("data-due")) - now) / 60000);
      if (left < 0) {
        el.textContent = "overdue by " + describe(left);
        el.classList.add("overdue");
      } else {
        el.textContent = describe(left) + " left";
      }
    });
  }

  function ids(tbody) {
    var found = {};
    tbody.querySelectorAll("tr[data-alert-id]").forEach(function (row) {
      found[row.getAttribute("data-alert-id")] = row;
    });
    return found;
  }

  function busy(table) {
    // Never replace rows under someone writing a resolution note or tabbing through actions.
    if (table.contains(document.activeElement) && document.activeElement !== document.body) {
      return true;
    }
    return table.querySelector("details[open]") !== null;
  }

  function startPolling(table) {
    var tbody = table.querySelector("tbody");
    var news = document.getElementById("inbox-news");
    var url = table.getAttribute("data-poll-url");
    var seconds = parseInt(table.getAttribute("data-poll-seconds"), 10) || 10;

    function poll() {
      if (busy(table) || document.hidden) { return; }
      fetch(url + window.location.search, {
        credentials: "same-origin",
        headers: { "Accept": "text/html" },
        redirect: "manual"
      }).then(function (response) {
        if (response.type === "opaqueredirect" || response.status === 401) {
          window.location.reload();  // the session ended: the page will ask for a login
          return null;
        }
        return response.ok ? response.text() : null;
      }).then(function (html) {
        if (html === null || busy(table)) { return; }
        var before = ids(tbody);
        var holder = document.createElement("tbody");
        holder.innerHTML = html;
        var urgent = 0;
        var added = 0;
        holder.querySelectorAll("tr[data-alert-id]").forEach(function (row) {
          if (!before[row.getAttribute("data-alert-id")]) {
            added += 1;
            row.classList.add("new");
            if (row.getAttribute("data-urgent") === "1") { urgent += 1; }
          }
        });
        tbody.replaceChildren.apply(tbody, Array.prototype.slice.call(holder.childNodes));
        tickCountdowns(tbody);
        if (added && news) {
          news.textContent = urgent
            ? urgent + " new urgent alert" + (urgent > 1 ? "s" : "") + " arrived."
            : added + " new alert" + (added > 1 ? "s" : "") + " arrived.";
        }
      }).catch(function () { /* offline for a moment: the next poll retries */ });
    }

    window.setInterval(poll, seconds * 1000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    var table = document.getElementById("inbox");
    if (table) {
      startPolling(table);
    }
    tickCountdowns(document);
    window.setInterval(function () { tickCountdowns(document); }, 30000);
  });
})();
