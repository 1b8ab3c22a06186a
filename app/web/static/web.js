// Small behaviours shared by every page; no framework. htmx sends the CSRF token too.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var toggle = document.querySelector("[data-nav-toggle]");
    if (toggle) {
      toggle.addEventListener("click", function () {
        var open = toggle.getAttribute("aria-expanded") === "true";
        toggle.setAttribute("aria-expanded", String(!open));
        document.body.classList.toggle("nav-open", !open);
      });
    }
    document.querySelectorAll("[data-autosubmit]").forEach(function (el) {
      el.addEventListener("change", function () { el.form.submit(); });
    });
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.getAttribute("data-confirm"))) { event.preventDefault(); }
      });
    });
  });
  document.addEventListener("htmx:configRequest", function (event) {
    var meta = document.querySelector('meta[name="csrf-token"]');
    if (meta) { event.detail.headers["X-CSRFToken"] = meta.content; }
  });
})();
// The new-campaign wizard: drag and drop onto the upload, the preview's recipient list,
// inserting {{ fields }} where the cursor was.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var zone = document.querySelector("[data-dropzone]");
    if (zone) {
      var input = zone.querySelector("input[type=file]");
      var label = zone.querySelector("[data-dropzone-name]");
      var show = function () { label.textContent = input.files.length ? input.files[0].name : "No file chosen"; };
      input.addEventListener("change", show);
      ["dragenter", "dragover"].forEach(function (name) {
        zone.addEventListener(name, function (event) { event.preventDefault(); zone.classList.add("dragging"); });
      });
      ["dragleave", "drop"].forEach(function (name) {
        zone.addEventListener(name, function () { zone.classList.remove("dragging"); });
      });
      zone.addEventListener("drop", function (event) {
        event.preventDefault();
        if (event.dataTransfer && event.dataTransfer.files.length) {
          input.files = event.dataTransfer.files;
          show();
        }
      });
    }
    var lastField = null;
    document.querySelectorAll("#message-form input[type=text], #message-form textarea").forEach(function (el) {
      el.addEventListener("focus", function () { lastField = el; });
    });
    document.querySelectorAll("[data-insert]").forEach(function (button) {
      button.addEventListener("click", function () {
        var target = lastField || document.getElementById("f-body_text");
        if (!target) { return; }
        var at = target.selectionStart || target.value.length;
        target.value = target.value.slice(0, at) + button.getAttribute("data-insert") + target.value.slice(target.selectionEnd || at);
        target.focus();
        target.dispatchEvent(new Event("input", { bubbles: true }));
      });
    });
  });
  document.addEventListener("htmx:afterSwap", function (event) {
    var list = event.target.querySelector && event.target.querySelector("template[data-preview-recipients]");
    var select = document.getElementById("preview-email");
    if (list && select) {
      var chosen = select.value;
      select.innerHTML = '<option value="">First recipient</option>' + list.innerHTML;
      if (chosen) { select.value = chosen; }
    }
  });
})();
