// Period filters (dashboard/_macros.html period_fields), from a static file because the CSP allows no inline script:
// - the From/To days show only while "Custom" is chosen;
// - choosing "Custom" (or one of the two days) does not filter at once: the form's change-triggered HTMX request
//   waits until both days are filled; "Apply" still submits, and the server explains what is missing.
(function () {
  function chosenPeriod(form) {
    var checked = form.querySelector('input[name="period"]:checked');
    return checked ? checked.value : "";
  }

  function syncCustomDays(root) {
    (root || document).querySelectorAll("[data-custom-days]").forEach(function (days) {
      var form = days.closest("form");
      if (form) days.hidden = chosenPeriod(form) !== "custom";
    });
  }

  function missingDay(form) {
    var days = Array.prototype.slice.call(form.querySelectorAll('[data-custom-days] input[type="date"]'));
    return days.filter(function (input) { return !input.value; })[0] || null;
  }

  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target instanceof HTMLInputElement && target.name === "period" && target.form) {
      syncCustomDays(target.form);
      var missing = target.value === "custom" ? missingDay(target.form) : null;
      if (missing) missing.focus();
    }
  });

  document.addEventListener("htmx:confirm", function (event) {
    var form = event.detail && event.detail.elt;
    var trigger = event.detail && event.detail.triggeringEvent;
    if (!(form instanceof HTMLFormElement) || !form.querySelector("[data-custom-days]")) return;
    if (trigger && trigger.type === "change" && chosenPeriod(form) === "custom" && missingDay(form)) {
      event.preventDefault();
    }
  });

  document.addEventListener("htmx:afterSettle", function () { syncCustomDays(); });
  syncCustomDays();
})();
