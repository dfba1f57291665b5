// The review page: a grid of cards, filters, cursor paging, decisions and edits, all usable from the keyboard
// (j/k move, a approve, r reject, e edit, Esc cancel). Status messages go to a polite live region, errors to
// an alert, and focus always stays on the card being reviewed.

import { Api } from "./api.js";
import { basename, changesFrom, closeEditor, fill, newCard, openEditor } from "./cards.js";
import { announce, askKey, clearError, showError } from "./messages.js";
import { Thumbs } from "./thumbs.js";

const PAGE_SIZE = 24; // ?limit=N in the address asks for another size (1-200, the API's limit)
const $ = (id) => document.getElementById(id);

const state = {
  filters: { status: "pending", s3_prefix: "", source: "", q: "" },
  cursors: [null], // cursors[i] opens page i; next_cursor of the last page shown is pushed on "next"
  next: null,
  items: new Map(), // id -> entry, as the API last answered it
  current: 0,
  pageSize: PAGE_SIZE,
};

const api = new Api(askKey);
const thumbs = new Thumbs(api);

// --- cards and focus ----------------------------------------------------------------------------------------
function cards() {
  return [...document.querySelectorAll("#cards .card")];
}

function focusCard(index, { scroll = true } = {}) {
  const all = cards();
  if (!all.length) return;
  state.current = Math.max(0, Math.min(index, all.length - 1));
  all.forEach((card, i) => {
    card.tabIndex = i === state.current ? 0 : -1; // one tab stop for the grid: the current card
    card.classList.toggle("current", i === state.current);
  });
  const card = all[state.current];
  card.focus({ preventScroll: true });
  if (scroll) card.scrollIntoView({ block: "nearest", behavior: "smooth" });
}

function currentCard() {
  return cards()[state.current] || null;
}

function itemOf(card) {
  return state.items.get(Number(card.dataset.id));
}

function update(entry) {
  state.items.set(entry.id, entry);
  const card = document.querySelector(`#cards .card[data-id="${entry.id}"]`);
  if (card) fill(card, entry);
}

// --- loading a page -----------------------------------------------------------------------------------------
async function load(pageIndex) {
  clearError();
  const cursor = state.cursors[pageIndex];
  const list = $("cards");
  list.setAttribute("aria-busy", "true");
  try {
    const page = await api.json("GET", "/v1/captions", {
      params: { ...state.filters, limit: state.pageSize, cursor },
    });
    state.cursors = state.cursors.slice(0, pageIndex + 1);
    state.next = page.next_cursor;
    render(page.items, pageIndex);
  } catch (error) {
    showError(error);
  } finally {
    list.removeAttribute("aria-busy");
  }
}

function render(items, pageIndex) {
  thumbs.reset();
  state.items = new Map(items.map((item) => [item.id, item]));
  const list = $("cards");
  list.replaceChildren(...items.map((item) => newCard(item)));
  for (const card of cards()) {
    const img = card.querySelector(".thumb img");
    thumbs.watch(img, itemOf(card).s3_uri, card.querySelector(".thumb-note"));
  }
  $("empty").hidden = items.length > 0;
  $("approve-all").disabled = $("reject-all").disabled = items.length === 0;
  $("prev").disabled = pageIndex === 0;
  $("next").disabled = !state.next;
  $("page-number").textContent = `Page ${pageIndex + 1}`;
  const what = state.filters.status || "any status";
  $("summary").textContent = `${items.length} caption${items.length === 1 ? "" : "s"} on this page · ${what}`;
  announce(`Page ${pageIndex + 1}: ${items.length} caption${items.length === 1 ? "" : "s"}.`);
  if (items.length) focusCard(0, { scroll: false });
  else $("cards").focus();
}

// --- decisions and edits ------------------------------------------------------------------------------------
function writeBackNote(entry) {
  const written = entry.write_back;
  if (entry.status !== "approved" || !written || written.status === "deferred") return "";
  if (written.status === "done") return ` Written back: ${written.modes.join(", ")}.`;
  return ` Write-back failed: ${written.error}`;
}

async function busy(card, work) {
  if (card.getAttribute("aria-busy") === "true") return;
  card.setAttribute("aria-busy", "true");
  try {
    clearError();
    await work();
  } catch (error) {
    showError(error);
  } finally {
    card.removeAttribute("aria-busy");
  }
}

async function decide(card, status) {
  await busy(card, async () => {
    const entry = await api.json("PATCH", `/v1/captions/${card.dataset.id}`, { body: { status } });
    update(entry);
    const verb = status === "approved" ? "Approved" : status === "rejected" ? "Rejected" : "Back to review:";
    announce(`${verb} ${basename(entry.s3_uri)}.${writeBackNote(entry)}`);
    const index = cards().indexOf(card);
    if (index === state.current) focusCard(index + 1); // on to the next card, as a reviewer expects
  });
}

async function retry(card) {
  await busy(card, async () => {
    const entry = await api.json("POST", `/v1/captions/${card.dataset.id}/write-back`);
    update(entry);
    announce(`${basename(entry.s3_uri)}:${writeBackNote(entry)}`);
  });
}

function edit(card) {
  if (card.classList.contains("editing")) return;
  const item = itemOf(card);
  const form = openEditor(card, item);
  const finish = (message) => {
    closeEditor(card);
    focusCard(cards().indexOf(card));
    if (message) announce(message);
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const changes = changesFrom(form, itemOf(card));
    if (!Object.keys(changes).length) {
      finish("Nothing changed.");
      return;
    }
    busy(card, async () => {
      const entry = await api.json("PATCH", `/v1/captions/${card.dataset.id}`, { body: changes });
      update(entry);
      finish(`Saved ${basename(entry.s3_uri)}: ${entry.status}. Press a to approve.`);
    });
  });
  form.addEventListener("keydown", (event) => {
    if (event.key === "Escape") {
      event.preventDefault();
      event.stopPropagation();
      finish("Edit cancelled.");
    } else if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  form.querySelector('[data-action="cancel"]').addEventListener("click", () => finish("Edit cancelled."));
  form.querySelector('[data-action="revert"]').addEventListener("click", () => {
    const current = itemOf(card);
    form.elements.caption.value = current.caption;
    form.elements.alt_text.value = current.alt_text ?? "";
    form.elements.keywords.value = (current.keywords ?? []).join(", ");
    form.elements.caption.focus();
  });
}

async function decideAll(status) {
  const ids = [...state.items.keys()];
  if (!ids.length) return;
  const buttons = [$("approve-all"), $("reject-all")];
  buttons.forEach((b) => (b.disabled = true));
  clearError();
  try {
    const result = await api.json("POST", "/v1/captions/review", { body: { ids, status } });
    result.items.forEach(update);
    const failed = result.items.filter((e) => e.write_back && e.write_back.status === "failed").length;
    const written = result.items.filter((e) => e.status === "approved" && e.write_back?.status === "done").length;
    let message = `${status === "approved" ? "Approved" : "Rejected"} ${result.items.length} captions.`;
    if (status === "approved" && written) message += ` ${written} written back.`;
    if (failed) message += ` ${failed} write-backs failed: see their cards.`;
    announce(message);
  } catch (error) {
    showError(error);
  } finally {
    buttons.forEach((b) => (b.disabled = state.items.size === 0));
  }
}

// --- keyboard ----------------------------------------------------------------------------------------------
function typing(target) {
  return target instanceof HTMLElement && (target.isContentEditable || target.closest("input, textarea, select"));
}

function onKey(event) {
  if (event.defaultPrevented || event.ctrlKey || event.metaKey || event.altKey) return;
  if ($("key-dialog").open || typing(event.target)) return;
  const card = currentCard();
  const inCard = card && card.contains(document.activeElement);
  const actions = {
    j: () => focusCard(inCard ? state.current + 1 : state.current),
    k: () => focusCard(inCard ? state.current - 1 : state.current),
    a: () => card && decide(card, "approved"),
    r: () => card && decide(card, "rejected"),
    e: () => card && edit(card),
  };
  const action = actions[event.key];
  if (!action || (card && card.classList.contains("editing"))) return;
  event.preventDefault();
  action();
}

// --- wiring ------------------------------------------------------------------------------------------------
function readFilters() {
  const params = new URLSearchParams(window.location.search);
  for (const name of Object.keys(state.filters)) {
    if (params.has(name)) state.filters[name] = params.get(name);
  }
  const limit = Number(params.get("limit"));
  if (Number.isInteger(limit) && limit >= 1 && limit <= 200) state.pageSize = limit;
  const form = $("filters");
  for (const [name, value] of Object.entries(state.filters)) form.elements[name].value = value;
}

function applyFilters(event) {
  event.preventDefault();
  const form = $("filters");
  const params = new URLSearchParams();
  for (const name of Object.keys(state.filters)) {
    state.filters[name] = form.elements[name].value.trim();
    if (state.filters[name]) params.set(name, state.filters[name]);
  }
  params.set("status", state.filters.status); // "" (any) is a choice too, not the default
  if (state.pageSize !== PAGE_SIZE) params.set("limit", String(state.pageSize));
  // The filters go in the address (bookmarkable); the key never does.
  window.history.replaceState(null, "", `${window.location.pathname}?${params}`);
  state.cursors = [null];
  load(0);
}

function onCardClick(event) {
  const card = event.target.closest(".card");
  if (!card || event.target.closest("form.edit")) return; // the editor handles its own clicks
  const index = cards().indexOf(card);
  const button = event.target.closest("button[data-action]");
  if (index !== state.current || !button) focusCard(index, { scroll: false });
  if (!button) return;
  const action = button.dataset.action;
  if (action === "approve") decide(card, "approved");
  else if (action === "reject") decide(card, "rejected");
  else if (action === "edit") edit(card);
  else if (action === "retry") retry(card);
}

function start() {
  readFilters();
  $("filters").addEventListener("submit", applyFilters);
  $("cards").addEventListener("click", onCardClick);
  $("approve-all").addEventListener("click", () => decideAll("approved"));
  $("reject-all").addEventListener("click", () => decideAll("rejected"));
  $("prev").addEventListener("click", () => load(state.cursors.length - 2));
  $("next").addEventListener("click", () => {
    state.cursors.push(state.next);
    load(state.cursors.length - 1);
  });
  $("key-button").hidden = !api.keyed;
  $("key-button").addEventListener("click", () => {
    api.forgetKey();
    load(state.cursors.length - 1);
  });
  document.addEventListener("keydown", onKey);
  load(0);
}

start();
