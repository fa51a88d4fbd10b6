// review digest search page: Pagefind's Component UI over the index in pagefind/ (see search.html).
// Loaded by the search page only, so article pages stay small.
(function () {
  "use strict";
  // Search page: load Pagefind's Component UI from the bundle beside the site (data-bundle is a relative
  // URL, so this works under a sub-path), put its components in place of the plain form, and run the query
  // in ?q= with any filters in the address (?journal=..., ?author=...).
  var box = document.getElementById("search");
  var bundle = box && box.getAttribute("data-bundle");
  var components = document.getElementById("search-components");
  if (bundle && components) {
    var status = box.querySelector(".search-status");
    var params = new URLSearchParams(window.location.search);
    var query = (params.get("q") || "").trim();
    var filters = {};
    var known = ["year", "journal", "publication type", "topic", "author"];  // data-pagefind-filter names
    params.forEach(function (value, key) {
      if (known.indexOf(key) >= 0 && value) (filters[key] = filters[key] || []).push(value);
    });
    bundle = new URL(bundle, document.baseURI).pathname;
    // A large digest's index is in shards (data-merge): Pagefind merges them into one result list.
    var merged = (box.getAttribute("data-merge") || "").split(" ").filter(Boolean).map(function (path) {
      return { bundlePath: new URL(path, document.baseURI).pathname };
    });
    var script = document.createElement("script");
    script.src = bundle + "pagefind-component-ui.js";
    script.onerror = function () {
      if (status) status.textContent = "The search index is missing: rebuild the site with search turned on.";
    };
    script.onload = function () {
      if (merged.length) {
        window.PagefindComponents.configureInstance("default", { bundlePath: bundle, mergeIndex: merged });
      }
      var parts = components.content.cloneNode(true);
      parts.querySelector("pagefind-config").setAttribute("bundle-path", bundle);
      var fallback = box.querySelector(".search-fallback");
      box.insertBefore(parts, fallback);
      if (fallback) fallback.remove();
      var input = box.querySelector("pagefind-input input");
      if (input) input.id = "search-q";  // named by the page's visible label
      mendDropdowns();
      new MutationObserver(mendDropdowns).observe(box, { childList: true, subtree: true });
      var instance = window.PagefindComponents.getInstanceManager().getInstance("default");
      if (query || Object.keys(filters).length) {
        if (input) input.value = query;
        instance.triggerSearchWithFilters(query, filters);
      } else if (input) {
        input.focus();
      }
      var shown = parseInt(box.querySelector("pagefind-results").getAttribute("max-results"), 10) || 0;
      var summary = box.querySelector("pagefind-summary");
      if (status && summary) summary.after(status);
      instance.on("results", function (result) {
        var total = (result && result.results && result.results.length) || 0;
        if (status) status.textContent = shown && total > shown ? "Showing the first " + shown + " of " +
          total.toLocaleString() + " results: add words or choose filters to narrow them." : "";
      });
      // Keep the query in the address, so Back from an article returns to the same results.
      instance.on("search", function (term) {
        var next = new URLSearchParams(window.location.search);
        if (term && term.trim()) next.set("q", term.trim()); else next.delete("q");
        var search = next.toString();
        window.history.replaceState(null, "", search ? "?" + search : window.location.pathname);
      });
    };
    document.head.appendChild(script);
  }

  // Pagefind 1.5's filter dropdowns leave their trigger (role=combobox) and list without a name, name each
  // value differently from what it shows, and scroll the list without keyboard access (axe-core): mend that.
  function mendDropdowns() {
    box.querySelectorAll("pagefind-filter-dropdown").forEach(function (dropdown) {
      var label = dropdown.getAttribute("label") || dropdown.getAttribute("filter");
      var trigger = dropdown.querySelector(".pf-dropdown-trigger");
      var list = dropdown.querySelector("[role=listbox]");
      if (trigger && trigger.getAttribute("aria-label") !== label) trigger.setAttribute("aria-label", label);
      if (list && list.getAttribute("aria-label") !== label) {
        list.setAttribute("aria-label", label);
        list.removeAttribute("aria-labelledby");
        list.tabIndex = 0;  // a long list scrolls: let the keyboard reach it too
      }
      dropdown.querySelectorAll("[role=option][aria-label]").forEach(function (option) {
        option.removeAttribute("aria-label");
      });
    });
  }
})();
