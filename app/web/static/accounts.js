// The add-account form: choosing a provider fills in its preset (host, port, security,
// daily cap, username). Fields the operator typed in are replaced only when they still
// hold the previous preset's value.
(function () {
  "use strict";
  document.addEventListener("DOMContentLoaded", function () {
    var select = document.getElementById("f-provider");
    if (!select) { return; }
    var presets = JSON.parse(select.getAttribute("data-presets"));
    var fields = { host: "host", port: "port", security: "security", daily_limit: "daily_cap", username: "username" };
    var previous = presets[select.value];
    select.addEventListener("change", function () {
      var preset = presets[select.value];
      Object.keys(fields).forEach(function (name) {
        var input = document.getElementById("f-" + name);
        if (!input) { return; }
        var before = previous ? String(previous[fields[name]] || "") : "";
        if (input.value === "" || input.value === before) {
          input.value = preset[fields[name]] === null ? "" : String(preset[fields[name]]);
        }
      });
      previous = preset;
    });
  });
})();
