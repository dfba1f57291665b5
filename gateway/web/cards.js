// One card per catalogue entry. Everything a model wrote or an image contained goes into the page as text
// (textContent, or an attribute the browser never runs), never as HTML: a caption of
// <img src=x onerror=alert(1)> is shown as those characters.

const STATUS_LABELS = { pending: "Pending", edited: "Edited", approved: "Approved", rejected: "Rejected" };
let serial = 0;

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined && text !== null) node.textContent = text;
  if (className) node.className = className;
  return node;
}

export function basename(s3Uri) {
  return s3Uri.slice(s3Uri.lastIndexOf("/") + 1) || s3Uri;
}

// What the page shows and write-back writes: a person's edit where there is one, the model's text otherwise.
export function effective(item) {
  const edited = item.edited || {};
  return {
    caption: edited.caption ?? item.caption,
    alt_text: edited.alt_text ?? item.alt_text ?? "",
    keywords: edited.keywords ?? item.keywords ?? [],
  };
}

export function newCard(item) {
  const node = document.getElementById("card-template").content.firstElementChild.cloneNode(true);
  const card = node.querySelector(".card");
  serial += 1;
  const ids = { name: `card-${serial}-name`, badge: `card-${serial}-status`, caption: `card-${serial}-caption` };
  card.querySelector(".name").id = ids.name;
  card.querySelector(".badge").id = ids.badge;
  card.querySelector(".caption").id = ids.caption;
  card.setAttribute("aria-labelledby", ids.name);
  card.setAttribute("aria-describedby", `${ids.badge} ${ids.caption}`);
  fill(card, item);
  return node;
}

export function fill(card, item) {
  const shown = effective(item);
  const edited = item.edited || {};
  card.dataset.id = String(item.id);
  card.dataset.status = item.status;
  card.querySelector(".name").textContent = basename(item.s3_uri);
  card.querySelector(".uri").textContent = item.s3_uri;
  const badge = card.querySelector(".badge");
  badge.textContent = STATUS_LABELS[item.status] || item.status;
  badge.className = `badge badge-${item.status}`;
  card.querySelector(".caption").textContent = shown.caption;
  const model = card.querySelector(".model");
  model.hidden = edited.caption === undefined || edited.caption === null;
  model.querySelector(".text").textContent = item.caption;
  card.querySelector(".thumb img").alt = `Preview of ${basename(item.s3_uri)}`;
  fillFacts(card.querySelector(".facts"), item, shown);
  fillWriteBack(card.querySelector(".write-back"), item);
  card.querySelector(".meta").replaceChildren(...metaParts(item));
}

function fillFacts(facts, item, shown) {
  const edited = item.edited || {};
  facts.replaceChildren();
  const add = (label, value, className) => {
    const row = el("div", undefined, className);
    row.append(el("dt", label));
    const values = Array.isArray(value) ? value : [value];
    for (const part of values) row.append(part instanceof Node ? wrap(part) : el("dd", part));
    facts.append(row);
  };
  if (item.headline) add("Headline", item.headline);
  if (shown.alt_text) add("Alt text", shown.alt_text);
  if (edited.alt_text && item.alt_text) add("Model's alt text", item.alt_text, "model-fact");
  if (shown.keywords.length) add("Keywords", chips(shown.keywords));
  if (edited.keywords && item.keywords && item.keywords.length) {
    add("Model's keywords", chips(item.keywords), "model-fact");
  }
  if (item.visible_text && item.visible_text.length) add("Visible text", chips(item.visible_text, "quoted"));
  if (item.brands && item.brands.length) add("Brands", item.brands.map((b) => evidence(b.name, b.evidence)));
  if (item.added_terms && item.added_terms.length) {
    add("Enhancer added", item.added_terms.map((t) => evidence(t.term, t.evidence)));
  }
  if (item.enhanced && item.original_caption) add("VLM's caption", item.original_caption, "model-fact");
  if (item.enhancement_error) add("Enhancement error", item.enhancement_error, "warning");
}

function wrap(node) {
  const dd = el("dd");
  dd.append(node);
  return dd;
}

function chips(words, className) {
  const list = el("ul", undefined, `chips${className ? ` ${className}` : ""}`);
  for (const word of words) list.append(el("li", word));
  return list;
}

function evidence(name, why) {
  const span = el("span");
  span.append(el("strong", name), document.createTextNode(" — "), el("span", why, "evidence"));
  return span;
}

function metaParts(item) {
  const params = item.params || {};
  const parts = [
    ["Style", item.style],
    ["Language", params.language],
    ["Source", item.source],
  ];
  if (item.enhanced) parts.push(["Enhanced", "yes"]);
  return parts
    .filter(([, value]) => value)
    .map(([label, value]) => {
      const span = el("span", undefined, "meta-part");
      span.append(el("span", `${label} `, "label"), document.createTextNode(value));
      return span;
    });
}

function fillWriteBack(line, item) {
  const state = item.write_back;
  const retry = line.querySelector(".retry");
  line.hidden = !state;
  retry.hidden = true;
  line.className = "write-back";
  if (!state) return;
  const modes = state.modes.join(", ");
  const when = state.at ? ` at ${new Date(state.at).toLocaleTimeString()}` : "";
  let text = `Written back (${modes})${when}`;
  if (state.status === "deferred") text = `Write-back (${modes}) waits for approval`;
  if (state.status === "failed") {
    text = `Write-back (${modes}) failed${when}: ${state.error || "unknown error"}`;
    line.classList.add("failed");
    retry.hidden = item.status !== "approved";
  }
  line.querySelector(".text").textContent = text;
}

// The edit form, in place of the card's text. Returns the form; the caller wires save and cancel.
export function openEditor(card, item) {
  const form = document.getElementById("edit-template").content.firstElementChild.cloneNode(true);
  const shown = effective(item);
  form.elements.caption.value = shown.caption;
  form.elements.alt_text.value = shown.alt_text;
  form.elements.keywords.value = shown.keywords.join(", ");
  card.querySelector(".view").hidden = true;
  card.querySelector(".actions").hidden = true;
  card.querySelector(".view").after(form);
  card.classList.add("editing");
  form.elements.caption.focus();
  return form;
}

export function closeEditor(card) {
  const form = card.querySelector("form.edit");
  if (form) form.remove();
  card.querySelector(".view").hidden = false;
  card.querySelector(".actions").hidden = false;
  card.classList.remove("editing");
}

function sameList(a, b) {
  return a.length === b.length && a.every((value, i) => value === b[i]);
}

// What the form changes, as a PATCH body: only fields that differ from what is shown; a field set back to
// the model's own text drops the person's edit (null) rather than storing a copy of the model's words.
export function changesFrom(form, item) {
  const shown = effective(item);
  const model = { caption: item.caption, alt_text: item.alt_text ?? "", keywords: item.keywords ?? [] };
  const typed = {
    caption: form.elements.caption.value.trim(),
    alt_text: form.elements.alt_text.value.trim(),
    keywords: form.elements.keywords.value.split(",").map((k) => k.trim()).filter(Boolean),
  };
  const changes = {};
  for (const field of ["caption", "alt_text", "keywords"]) {
    const same = field === "keywords" ? sameList : (a, b) => a === b;
    if (same(typed[field], shown[field])) continue;
    const backToModel = same(typed[field], model[field]) || (field === "alt_text" && !typed[field]);
    changes[field] = backToModel ? null : typed[field];
  }
  return changes;
}
