// review digest: small progressive enhancements; every page works without this file.
(function () {
  "use strict";
  // Copy-to-clipboard buttons: <button data-copy="ID"> copies the text of the element with that id.
  document.querySelectorAll("button[data-copy]").forEach(function (button) {
    if (!navigator.clipboard) return;
    button.hidden = false;
    button.addEventListener("click", function () {
      var source = document.getElementById(button.getAttribute("data-copy"));
      if (!source) return;
      navigator.clipboard.writeText(source.textContent).then(function () {
        var label = button.textContent;
        button.textContent = "Copied";
        setTimeout(function () { button.textContent = label; }, 1500);
      });
    });
  });

  // Search page: load Pagefind's UI from the bundle beside the site (data-bundle is a relative URL, so
  // this works under a sub-path) and run the query in ?q= (and filters such as ?journal=...).
  var box = document.getElementById("search");
  var bundle = box && box.getAttribute("data-bundle");
  if (bundle) {
    var status = box.querySelector(".search-status");
    var params = new URLSearchParams(window.location.search);
    var query = (params.get("q") || "").trim();
    var script = document.createElement("script");
    bundle = new URL(bundle, document.baseURI).href;
    script.src = bundle + "pagefind-ui.js";
    script.onerror = function () {
      if (status) status.textContent = "The search index is missing: rebuild the site with search turned on.";
    };
    script.onload = function () {
      var fallback = box.querySelector(".search-fallback");
      var mount = document.createElement("div");
      box.insertBefore(mount, fallback);
      if (fallback) fallback.remove();
      var ui = new window.PagefindUI({
        element: mount, bundlePath: bundle, showSubResults: false, showImages: false, showEmptyFilters: false,
        pageSize: 10, excerptLength: 28, autofocus: !query,
        translations: { placeholder: "e.g. lupus nephritis" }
      });
      // The page's visible label names Pagefind's box (it only has a title of its own).
      var input = mount.querySelector("input.pagefind-ui__search-input");
      if (input) input.id = "search-q";
      var filters = {};
      params.forEach(function (value, key) {
        if (key !== "q" && value) (filters[key] = filters[key] || []).push(value);
      });
      if (Object.keys(filters).length) ui.triggerFilters(filters);
      if (query) ui.triggerSearch(query);
      // Keep the query in the address, so Back from an article returns to the same results.
      var timer;
      mount.addEventListener("input", function (event) {
        if (!event.target.matches || !event.target.matches("input[type=text], input[type=search]")) return;
        clearTimeout(timer);
        timer = setTimeout(function () {
          var next = new URLSearchParams(window.location.search);
          if (event.target.value.trim()) next.set("q", event.target.value.trim()); else next.delete("q");
          var search = next.toString();
          window.history.replaceState(null, "", search ? "?" + search : window.location.pathname);
        }, 400);
      });
    };
    document.head.appendChild(script);
  }
})();
