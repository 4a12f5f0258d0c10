// The sandbox page: reads the JSON endpoints and renders them.
// Event data is user data: every value is inserted with text nodes (el() / textContent), never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const number = new Intl.NumberFormat("en-US");
  const REFRESH_MS = 2000;
  const state = { customer: null, audience: null, timer: null };

  // Build an element; children are nodes or plain text (appended as text nodes, so never parsed as HTML).
  function el(tag, props, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(props || {})) {
      if (key === "class") node.className = value;
      else if (key === "dataset") Object.assign(node.dataset, value);
      else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
      else node.setAttribute(key, value);
    }
    for (const child of children.flat()) {
      if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
    }
    return node;
  }

  async function getJSON(path) {
    const response = await fetch(path, { headers: { Accept: "application/json" }, cache: "no-store" });
    const payload = await response.json();
    if (!response.ok) throw new Error(payload.error || `${path} answered ${response.status}`);
    return payload;
  }

  function time(iso) {
    if (!iso) return el("span", { class: "dim" }, "–");
    const date = new Date(iso);
    return el("time", { datetime: iso, title: iso }, date.toLocaleTimeString("en-GB"));
  }

  function eventBadge(name) {
    const kind = ["identify", "customer_patch"].includes(name) ? "profile"
      : ["optin", "unsubscribe"].includes(name) ? "consent"
        : ["viewed_product", "search", "add_to_cart", "remove_from_cart", "wishlist", "purchase"].includes(name) ? "commerce"
          : "custom";
    return el("span", { class: `badge ${kind}` }, name === null || name === undefined ? "(no name)" : name);
  }

  function customerLink(id) {
    return el("a", { href: `?q=${encodeURIComponent(id)}`, class: "id", onclick: (e) => { e.preventDefault(); showCustomer(id); } }, id);
  }

  // A short, readable line about what an event carried.
  function details(props) {
    const parts = [];
    if (Array.isArray(props.products)) {
      const ids = props.products.map((p) => (p && p.id !== undefined ? String(p.id) : "?"));
      parts.push(`products ${ids.slice(0, 4).join(", ")}${ids.length > 4 ? ` +${ids.length - 4}` : ""}`);
    }
    if (props.order_id !== undefined) parts.push(`order ${props.order_id}`);
    if (props.total !== undefined) parts.push(`total ${props.total}`);
    if (props.search_term !== undefined) parts.push(`“${props.search_term}”`);
    if (props.customer && typeof props.customer === "object") {
      const keys = Object.keys(props.customer);
      if (props.customer.email !== undefined) parts.push(`email ${props.customer.email}`);
      const attrs = keys.filter((k) => k !== "email");
      if (attrs.length) parts.push(`attributes ${attrs.join(", ")}`);
    } else if (props.email !== undefined) {
      parts.push(`email ${props.email}`);
    }
    return parts.join(" · ");
  }

  function fillTable(id, rows) {
    const table = $(id);
    table.tBodies[0].replaceChildren(...rows);
    table.hidden = rows.length === 0;
    $(`${id}-empty`).hidden = rows.length !== 0;
  }

  function renderStats(stats) {
    $("namespace").textContent = stats.namespace === null ? "any (each event's own token)" : stats.namespace;
    $("faults").textContent = stats.faults.description;
    $("total-accepted").textContent = number.format(stats.accepted);
    $("total-rejected").textContent = number.format(stats.rejected);
    $("total-customers").textContent = number.format(stats.distinct_ids);
    const served = stats.served;
    $("total-faults").textContent = number.format(served.served_500 + served.served_429 + served.dropped);
    $("faults-detail").textContent =
      `${number.format(served.served_500)} × 500 · ${number.format(served.served_429)} × 429 · ${number.format(served.dropped)} dropped`;
    fillTable("event-totals", stats.events.map((e) => el("tr", { dataset: { event: e.event } },
      el("td", {}, eventBadge(e.event || null)),
      el("td", { class: "num accepted" }, number.format(e.accepted)),
      el("td", { class: "num customers" }, number.format(e.customers)),
      el("td", { class: `num rejected${e.rejected ? " bad" : ""}` }, number.format(e.rejected)),
      el("td", {}, time(e.last_at)))));
    const names = stats.events.filter((e) => e.event).map((e) => el("option", { value: e.event }));
    $("event-names").replaceChildren(...names);
  }

  function eventRow(e) {
    return el("tr", { dataset: { id: String(e.id) } },
      el("td", {}, time(e.at)),
      el("td", {}, eventBadge(e.event)),
      el("td", {}, customerLink(e.distinct_id)),
      el("td", { class: "details" }, details(e.properties)));
  }

  function renderEvents(payload) {
    fillTable("latest-events", payload.events.map(eventRow));
  }

  function renderRejections(payload) {
    fillTable("latest-rejections", payload.rejections.map((r) => el("tr", {},
      el("td", {}, time(r.at)),
      el("td", {}, eventBadge(r.event)),
      el("td", {}, el("ul", { class: "reasons" }, r.reasons.map((reason) => el("li", {}, reason)))))));
  }

  function renderCustomer(c) {
    const box = $("customer-result");
    if (!c.found) {
      box.replaceChildren(el("p", { class: "empty", id: "customer-none" }, "No events for ", el("code", {}, c.query), "."));
      return;
    }
    const chips = [
      ...c.emails.map((x) => el("span", { class: "chip email" }, x)),
      ...c.distinct_ids.map((x) => el("span", { class: "chip" }, x)),
    ];
    const consent = c.subscribed === null ? "no opt-in or unsubscribe seen"
      : c.subscribed ? "subscribed (last: optin)" : "unsubscribed (last: unsubscribe)";
    const profile = Object.entries(c.profile).map(([k, v]) =>
      el("tr", {}, el("th", {}, k), el("td", {}, typeof v === "string" ? v : JSON.stringify(v))));
    const counts = Object.entries(c.counts).map(([name, n]) =>
      el("li", { dataset: { event: name } }, eventBadge(name), " ", el("b", {}, number.format(n))));
    box.replaceChildren(
      el("div", { class: "identity" }, el("span", { class: "label" }, "Identifiers"), ...chips),
      el("div", { class: "columns" },
        el("div", {},
          el("h3", {}, "Profile"),
          profile.length ? el("table", { class: "profile" }, el("tbody", {}, profile)) : el("p", { class: "dim" }, "No attributes."),
          el("p", { class: "consent-state", id: "customer-consent" }, "Consent: ", consent)),
        el("div", {},
          el("h3", {}, "Events ", el("span", { id: "customer-total", class: "count" }, number.format(c.total))),
          el("ul", { class: "counts" }, counts))),
      el("table", { class: "timeline" },
        el("thead", {}, el("tr", {}, el("th", {}, "Received"), el("th", {}, "Event"), el("th", {}, "distinct_id"), el("th", {}, "Details"))),
        el("tbody", {}, c.events.map(eventRow))));
  }

  function renderAudience(a) {
    const rows = a.customers.map((x) => el("tr", {},
      el("td", {}, customerLink(x.customer)), el("td", { class: "num" }, number.format(x.count)), el("td", {}, time(x.last_at))));
    const parts = [
      el("p", { class: "verdict" }, el("b", { id: "audience-count" }, number.format(a.count)),
        ` customer${a.count === 1 ? "" : "s"} did `, eventBadge(a.event), ` at least ${a.min} time${a.min === 1 ? "" : "s"}`,
        ` in the last ${a.days} day${a.days === 1 ? "" : "s"}.`),
    ];
    if (rows.length) {
      parts.push(el("table", { id: "audience-customers" },
        el("thead", {}, el("tr", {}, el("th", {}, "Customer"), el("th", { class: "num" }, "Times"), el("th", {}, "Last"))),
        el("tbody", {}, rows)));
    }
    if (a.count > a.customers.length) parts.push(el("p", { class: "dim" }, `Showing the first ${a.customers.length}.`));
    $("audience-result").replaceChildren(...parts);
  }

  function showError(error) {
    const box = $("error");
    box.textContent = `Could not reach the sandbox: ${error.message}`;
    box.hidden = false;
  }

  async function loadCustomer() {
    if (state.customer) renderCustomer(await getJSON(`/api/customer?q=${encodeURIComponent(state.customer)}`));
  }

  async function loadAudience() {
    if (!state.audience) return;
    const { event, min, days } = state.audience;
    const query = new URLSearchParams({ event, min, days });
    renderAudience(await getJSON(`/api/audience?${query}`));
  }

  function rememberInURL() {
    const query = new URLSearchParams();
    if (state.customer) query.set("q", state.customer);
    if (state.audience) for (const [k, v] of Object.entries(state.audience)) query.set(k, v);
    const search = query.toString();
    history.replaceState(null, "", search ? `?${search}` : location.pathname);
  }

  function showCustomer(q) {
    state.customer = q;
    $("customer-q").value = q;
    rememberInURL();
    loadCustomer().catch(showError);
    $("customer-result").scrollIntoView({ behavior: "smooth", block: "nearest" });
  }

  async function refresh() {
    const [stats, events, rejections] = await Promise.all(
      [getJSON("/api/stats"), getJSON("/api/events?limit=25"), getJSON("/api/rejections?limit=10")]);
    renderStats(stats);
    renderEvents(events);
    renderRejections(rejections);
    await Promise.all([loadCustomer(), loadAudience()]);
    $("error").hidden = true;
  }

  function schedule() {
    clearTimeout(state.timer);
    if ($("live").checked && !document.hidden) {
      state.timer = setTimeout(() => refresh().catch(showError).finally(schedule), REFRESH_MS);
    }
  }

  function start() {
    const params = new URLSearchParams(location.search);
    if (params.get("q")) {
      state.customer = params.get("q");
      $("customer-q").value = state.customer;
    }
    if (params.get("event")) {
      state.audience = { event: params.get("event"), min: params.get("min") || "1", days: params.get("days") || "7" };
      $("audience-event").value = state.audience.event;
      $("audience-min").value = state.audience.min;
      $("audience-days").value = state.audience.days;
    }
    $("customer-form").addEventListener("submit", (e) => {
      e.preventDefault();
      showCustomer($("customer-q").value.trim());
    });
    $("audience-form").addEventListener("submit", (e) => {
      e.preventDefault();
      state.audience = { event: $("audience-event").value.trim(), min: $("audience-min").value, days: $("audience-days").value };
      rememberInURL();
      loadAudience().catch(showError);
    });
    $("live").addEventListener("change", schedule);
    document.addEventListener("visibilitychange", schedule);
    refresh()
      .then(() => { document.body.dataset.state = "ready"; })
      .catch((error) => { document.body.dataset.state = "error"; showError(error); })
      .finally(schedule);
  }

  start();
})();
