// The mapping editor page. It talks only to the JSON API of docs/SPEC.md §8a (plus /api/schedule);
// every check is the server's: the panel shows exactly what `validate` reports, Next runs
// what `verify` runs. No framework, no build step.
"use strict";

const TOKEN = document.querySelector('meta[name="editor-token"]').content;
const $ = (selector, root = document) => root.querySelector(selector);

// -- state ---------------------------------------------------------------------------------
// cards: [{object, group_type, group_name_field, properties: [{field, property, named}]}]
// `named` is true once the user typed a property name; until then it follows the field label.
const state = {
  cards: [],
  objects: [],
  fields: new Map(), // object name -> Promise of field choices
  fieldInfo: new Map(), // object name -> resolved choices (for labels and warnings)
  fileTypes: [], // group types of the saved mapping, suggested in the group type box
  problems: null, // null while a check is pending
  verifiedFor: null, // the document text that passed verification; Save needs it unchanged
  writable: false,
  connected: false,
  mappingFile: null, // the mapping_file setting (null: inline mapping)
  etag: null, // ETag of the file as last read or saved (null: no file yet); Save sends it as If-Match
  savedText: null, // the document as last read or saved: the page has unsaved work when it differs
  seq: 0,
};

// Every request goes through api(), which never throws: a network failure (the editor stopped,
// the connection dropped) or no answer within API_TIMEOUT_MS comes back as {ok: false,
// status: 0, data: {error}}, so every caller's error path runs and no "Verifying…" is left hanging.
const API_TIMEOUT_MS = 300_000;
async function api(method, path, body, headers = {}) {
  const options = { method, headers: { "X-Editor-Token": TOKEN, ...headers } };
  if (body !== undefined) {
    options.headers["Content-Type"] = "application/json";
    options.body = typeof body === "string" ? body : JSON.stringify(body);
  }
  if (typeof AbortSignal.timeout === "function") options.signal = AbortSignal.timeout(API_TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path, options);
  } catch (error) {
    const why = error && error.name === "TimeoutError"
      ? `no answer within ${API_TIMEOUT_MS / 1000} s`
      : "the editor cannot be reached (is it still running?)";
    return { status: 0, ok: false, headers: new Headers(), data: { error: `${method} ${path}: ${why}` } };
  }
  let data = null;
  try { data = await response.json(); } catch (_) { data = { error: `HTTP ${response.status}` }; }
  if (!response.ok && !(data && typeof data.error === "string")) data = { ...data, error: `HTTP ${response.status}` };
  return { status: response.status, ok: response.ok, headers: response.headers, data };
}

// The document exactly as the file format has it (UI bookkeeping left out).
function documentOf() {
  return {
    version: 1,
    mappings: state.cards.map((c) => ({
      object: c.object,
      group_type: c.group_type,
      group_name_field: c.group_name_field,
      properties: c.properties.map((p) => ({ field: p.field, property: p.property })),
    })),
  };
}
const documentText = () => JSON.stringify(documentOf(), null, 2);

function cardsFrom(doc) {
  const items = doc && Array.isArray(doc.mappings) ? doc.mappings : [];
  const text = (v) => (v === undefined || v === null ? "" : String(v));
  return items.map((m) => {
    m = m && typeof m === "object" ? m : {};
    const props = Array.isArray(m.properties) ? m.properties : [];
    return {
      object: text(m.object),
      group_type: text(m.group_type),
      group_name_field: text(m.group_name_field),
      properties: props.map((p) => {
        p = p && typeof p === "object" ? p : {};
        return { field: text(p.field), property: text(p.property ?? p.field), named: true };
      }),
    };
  });
}

// -- notices -------------------------------------------------------------------------------
function notice(text, isError = false) {
  const box = $("#notice");
  box.textContent = text;
  box.classList.toggle("error", isError);
  box.hidden = !text;
}

// -- fields of an object -------------------------------------------------------------------
function fieldsOf(objectName) {
  if (!objectName) return Promise.resolve([]);
  if (!state.fields.has(objectName)) {
    const promise = api("GET", `/api/objects/${encodeURIComponent(objectName)}/fields`).then((r) => {
      const list = r.ok ? r.data.fields : [];
      if (!r.ok) notice(`${objectName}: ${r.data.error}`, true);
      state.fieldInfo.set(objectName, new Map(list.map((f) => [f.path, f])));
      return list;
    });
    state.fields.set(objectName, promise);
  }
  return state.fields.get(objectName);
}

function option(value, label, selected) {
  const o = document.createElement("option");
  o.value = value;
  o.textContent = label;
  o.selected = selected;
  return o;
}

// Fill a field <select>: direct fields, then one group per relationship (Owner.Name, …).
function fillFieldSelect(select, choices, current, placeholder) {
  select.replaceChildren(option("", placeholder, !current));
  const groups = new Map();
  for (const f of choices) {
    const key = f.relationship ? f.path.split(".")[0] : "";
    if (!groups.has(key)) groups.set(key, []);
    groups.get(key).push(f);
  }
  for (const [key, list] of groups) {
    const group = document.createElement("optgroup");
    group.label = key ? `via ${key}` : "Fields";
    for (const f of list) {
      const label = f.relationship ? f.property : f.label; // "Owner Full Name", not "Full Name"
      group.append(option(f.path, `${label} (${f.path})`, f.path === current));
    }
    select.append(group);
  }
  if (current && !choices.some((f) => f.path === current)) {
    // Keep what the mapping says even when the org has no such field: verify will say so.
    select.append(option(current, `${current} (not found in the org)`, true));
  }
}

// -- rendering -----------------------------------------------------------------------------
function cardLabel(card, index) {
  return `${index + 1}: ${card.object || "Unknown"} -> ${card.group_type || "Unknown"}`;
}

function renderGroupTypes() {
  const types = new Set([...state.fileTypes, ...state.cards.map((c) => c.group_type).filter(Boolean)]);
  $("#group-types").replaceChildren(...[...types].map((t) => option(t, t, false)));
}

function render(focus) {
  const container = $("#cards");
  container.replaceChildren(...state.cards.map((card, index) => renderCard(card, index)));
  renderGroupTypes();
  if (focus) {
    const target = container.querySelector(focus);
    if (target) target.focus();
  }
}

function renderCard(card, index) {
  const node = $("#card-template").content.firstElementChild.cloneNode(true);
  node.dataset.index = index;
  const title = $(".card-title", node);
  title.textContent = cardLabel(card, index);
  title.id = `card-title-${index}`;
  node.setAttribute("aria-labelledby", title.id);
  $(".delete-mapping", node).setAttribute("aria-label", `Delete mapping ${cardLabel(card, index)}`);

  const objectSelect = $(".object", node);
  objectSelect.replaceChildren(option("", "Choose an object…", !card.object));
  for (const o of state.objects) {
    objectSelect.append(option(o.name, o.label === o.name ? o.name : `${o.label} (${o.name})`, o.name === card.object));
  }
  if (card.object && !state.objects.some((o) => o.name === card.object)) {
    objectSelect.append(option(card.object, `${card.object} (not queryable or not found)`, true));
  }
  const groupType = $(".group-type", node);
  groupType.value = card.group_type;

  const nameSelect = $(".name-field", node);
  const props = $(".props", node);
  card.properties.forEach((p, i) => props.append(renderProp(card, index, p, i)));
  fieldsOf(card.object).then((choices) => {
    fillFieldSelect(nameSelect, choices, card.group_name_field, "Choose the group name field…");
    renderNameWarnings(node, card);
    props.querySelectorAll(".prop").forEach((row, i) => {
      const p = card.properties[i];
      if (p) fillFieldSelect($(".prop-field", row), choices, p.field, "Choose a field…");
    });
  });
  return node;
}

function renderNameWarnings(node, card) {
  const info = state.fieldInfo.get(card.object);
  const field = info && info.get(card.group_name_field);
  const list = $(".name-warnings", node);
  list.replaceChildren(
    ...(field ? field.name_warnings : []).map((w) => {
      const li = document.createElement("li");
      li.textContent = w;
      return li;
    }),
  );
}

function renderProp(card, cardIndex, prop, i) {
  const row = $("#prop-template").content.firstElementChild.cloneNode(true);
  row.dataset.index = i;
  const n = i + 1;
  const where = cardLabel(card, cardIndex);
  $(".prop-field", row).setAttribute("aria-label", `${where}: Salesforce field of group property ${n}`);
  $(".prop-name", row).setAttribute("aria-label", `${where}: name of group property ${n}`);
  $(".prop-name", row).value = prop.property;
  $(".up", row).setAttribute("aria-label", `Move group property ${n} up`);
  $(".down", row).setAttribute("aria-label", `Move group property ${n} down`);
  $(".remove", row).setAttribute("aria-label", `Delete group property ${n}`);
  $(".up", row).disabled = i === 0;
  $(".down", row).disabled = i === card.properties.length - 1;
  fillFieldSelect($(".prop-field", row), [], prop.field, "Choose a field…");
  return row;
}

// -- checks --------------------------------------------------------------------------------
let checkTimer = null;
function changed() {
  state.problems = null;
  $(".panel").classList.add("stale"); // the list shown is the previous state's until check() answers
  state.verifiedFor = null;
  $("#verification").hidden = true;
  updateButtons();
  clearTimeout(checkTimer);
  checkTimer = setTimeout(check, 120);
}

async function check() {
  const seq = ++state.seq;
  const r = await api("POST", "/api/validate", documentOf());
  if (seq !== state.seq) return; // a newer edit is already being checked
  if (!r.ok) {
    notice(r.data.error, true);
    return;
  }
  state.problems = r.data.problems;
  $(".panel").classList.remove("stale");
  renderProblems();
  updateButtons();
}

function renderProblems() {
  const list = $("#problems");
  const problems = state.problems || [];
  list.replaceChildren(
    ...problems.map((p) => {
      const li = document.createElement("li");
      const text = document.createElement("span");
      text.className = "message";
      text.textContent = p;
      li.append(text);
      // Messages name their mapping as its card title does ("2: Account -> org id: …").
      const match = /^(\d+): /.exec(p);
      const card = match && $(`.card[data-index="${Number(match[1]) - 1}"]`);
      if (card) {
        const go = document.createElement("button");
        go.type = "button";
        go.className = "goto small";
        go.textContent = "Show";
        go.setAttribute("aria-label", `Show mapping ${match[1]}`);
        go.addEventListener("click", () => {
          card.scrollIntoView({ block: "start" });
          $(".object", card).focus();
        });
        li.append(" ", go);
      }
      return li;
    }),
  );
  const summary = $("#panel-summary");
  const panel = $(".panel");
  summary.classList.toggle("ok", problems.length === 0);
  panel.classList.toggle("ok", problems.length === 0);
  panel.classList.toggle("bad", problems.length > 0);
  summary.textContent = problems.length === 0
    ? "No problems. Click Next for the final verification against the org."
    : `${problems.length} problem${problems.length === 1 ? "" : "s"} to fix before Next:`;
}

function updateButtons() {
  $("#next").disabled = state.problems === null || state.problems.length > 0;
  $("#preview").disabled = !state.connected || state.problems === null || state.problems.length > 0;
  $("#save").disabled = !state.writable || state.verifiedFor === null || state.verifiedFor !== documentText();
}

function renderList(selector, items) {
  $(selector).replaceChildren(
    ...items.map((text) => {
      const li = document.createElement("li");
      li.textContent = text;
      return li;
    }),
  );
}

// Shows `waiting` in `element` while `task` runs. An error the task does not handle (an answer
// of an unexpected shape) replaces it, so a waiting text never stays on the page.
async function whileWaiting(element, waiting, task) {
  element.textContent = waiting;
  try {
    await task();
  } catch (error) {
    element.textContent = `Failed: ${error && error.message ? error.message : error}`;
    element.classList.remove("ok");
    updateButtons();
  }
}

async function verify() {
  $("#next").disabled = true;
  $("#verification").hidden = false;
  $("#verify-summary").classList.remove("ok");
  renderList("#verify-problems", []);
  renderList("#verify-warnings", []);
  await whileWaiting($("#verify-summary"), "Verifying against the org…", verifyNow);
}

async function verifyNow() {
  const snapshot = documentText();
  const r = await api("POST", "/api/verify", snapshot);
  if (!r.ok) {
    $("#verify-summary").textContent = r.data.error;
    updateButtons();
    return;
  }
  const { problems, warnings, summary } = r.data;
  renderList("#verify-problems", problems);
  renderList("#verify-warnings", warnings);
  const passed = problems.length === 0;
  $("#verify-summary").textContent = passed
    ? `${summary}${state.writable ? " Click Save to write the mapping file." : ""}`
    : `Verification found ${problems.length} problem${problems.length === 1 ? "" : "s"}:`;
  $("#verify-summary").classList.toggle("ok", passed);
  if (passed && snapshot === documentText()) state.verifiedFor = snapshot;
  updateButtons();
  $(passed && state.writable ? "#save" : "#verify-summary").focus?.();
}

// -- connection and preview ----------------------------------------------------------------
async function showConnection() {
  const r = await api("GET", "/api/connection");
  const line = $("#connection");
  state.connected = Boolean(r.ok && r.data.connected);
  $("#connect").hidden = !r.ok || r.data.connected;
  line.classList.toggle("ok", Boolean(r.ok && r.data.line));
  line.classList.toggle("bad", !state.connected);
  if (!r.ok) line.textContent = `Cannot check the connection: ${r.data.error}`;
  else if (r.data.line) line.textContent = r.data.line;
  else if (r.data.connected) line.textContent = `Connected (${r.data.problem})`;
  else line.textContent = `Not connected to Salesforce: ${r.data.problem}. Register ${r.data.callback_url} as a callback URL of the connected app, then click Connect to Salesforce.`;
  updateButtons();
}

async function connect() {
  $("#connect").disabled = true;
  const r = await api("POST", "/api/connect");
  if (!r.ok) {
    notice(r.data.error, true);
    $("#connect").disabled = false;
    return;
  }
  // Salesforce's login page; it sends the browser back to this editor's /oauth/callback.
  window.location.assign(r.data.authorize_url);
}

function cell(tag, text) {
  const node = document.createElement(tag);
  node.textContent = text;
  return node;
}

// One line per property: `name: value` for $set (values as JSON), the name alone for $unset.
function ops(values, withValues) {
  const td = document.createElement("td");
  if (!values) return td;
  const list = document.createElement("ul");
  list.className = "ops";
  list.append(...Object.entries(values).map(([k, v]) => cell("li", withValues ? `${k}: ${JSON.stringify(v)}` : k)));
  td.append(list);
  return td;
}

function renderPreview(data) {
  const nodes = [];
  for (const m of data.mappings) {
    nodes.push(cell("h3", `${m.mapping}: ${m.groups.length} group${m.groups.length === 1 ? "" : "s"} from ${m.rows_read ?? 0} rows`));
    if (m.problems.length) {
      const list = document.createElement("ul");
      list.className = "problems";
      list.append(...m.problems.map((p) => cell("li", p)));
      nodes.push(list);
      continue;
    }
    const table = document.createElement("table");
    table.className = "preview-table";
    const head = document.createElement("tr");
    head.append(cell("th", "group type"), cell("th", "group value"), cell("th", "$set"), cell("th", "$unset"));
    table.append(head);
    for (const g of m.groups) {
      const row = document.createElement("tr");
      row.className = "preview-group";
      const p = g.group_properties;
      row.append(cell("td", g.group_type), cell("td", g.group_value), ops(p.$set, true), ops(p.$unset, false));
      table.append(row);
    }
    nodes.push(table);
    const notes = [...m.skipped];
    if (m.deleted_ignored) notes.push(`${m.deleted_ignored} deleted row(s) ignored (deleted_records: ignore)`);
    if (notes.length) {
      const list = document.createElement("ul");
      list.className = "warnings";
      list.append(...notes.map((p) => cell("li", p)));
      nodes.push(list);
    }
  }
  $("#preview-results").replaceChildren(...nodes);
}

async function showPreview() {
  $("#preview").disabled = true;
  $("#preview-panel").hidden = false;
  $("#preview-results").replaceChildren();
  await whileWaiting($("#preview-summary"), "Reading sample rows…", previewNow);
}

async function previewNow() {
  const r = await api("POST", "/api/preview", documentText());
  updateButtons();
  if (!r.ok) {
    $("#preview-summary").textContent = r.data.error;
    return;
  }
  const p = r.data.policies;
  $("#preview-summary").textContent = `Up to ${r.data.rows_per_mapping} rows per mapping, as the target would send them (null_values: ${p.null_values}, deleted_records: ${p.deleted_records}). Nothing was sent.`;
  renderPreview(r.data);
  $("#preview-panel").scrollIntoView({ block: "nearest" });
}
// A document as the page holds it (property names filled in), for comparing versions.
function normalised(doc) {
  const saved = state.cards;
  state.cards = cardsFrom(doc);
  const result = documentOf();
  state.cards = saved;
  return result;
}

// Three-way merge by mapping: a mapping is its object and its rank among that object's mappings
// (a renamed group type is the same mapping). Taken from the side that changed it; added and
// deleted on either side; changed differently on both, the page's version is kept and named.
function mergeDocuments(base, mine, theirs) {
  const keyed = (doc) => {
    const seen = new Map();
    return new Map(normalised(doc).mappings.map((m) => {
      const n = (seen.get(m.object) || 0) + 1;
      seen.set(m.object, n);
      return [`${m.object}#${n}`, m];
    }));
  };
  const [b, m, t] = [keyed(base), keyed(mine), keyed(theirs)];
  const same = (x, y) => JSON.stringify(x) === JSON.stringify(y);
  const label = (x) => `${x.object || "Unknown"} -> ${x.group_type || "Unknown"}`;
  const mappings = [];
  const fromFile = [];
  const conflicts = [];
  for (const key of new Set([...m.keys(), ...t.keys()])) {
    const [base_, mine_, theirs_] = [b.get(key), m.get(key), t.get(key)];
    if (same(mine_, theirs_) || same(theirs_, base_)) {
      if (mine_) mappings.push(mine_);
    } else if (same(mine_, base_)) {
      if (theirs_) mappings.push(theirs_);
      fromFile.push(theirs_ ? label(theirs_) : `${label(base_)} deleted`);
    } else {
      if (mine_) mappings.push(mine_);
      conflicts.push(label(mine_ || theirs_));
    }
  }
  return { document: { version: 1, mappings }, fromFile, conflicts };
}

function showSource(exists) {
  $("#source").textContent = state.mappingFile
    ? `mapping_file: ${state.mappingFile}${exists ? "" : " (new file)"}`
    : "mapping setting (inline): Save needs the mapping_file setting";
}

// Show a mapping as read from the server (GET /api/mapping, or the current file of a 412).
function loadMapping(m, etag) {
  state.writable = Boolean(m.mapping_file);
  state.mappingFile = m.mapping_file;
  state.etag = m.exists ? etag : null;
  showSource(m.exists);
  state.cards = cardsFrom(m.mapping);
  state.fileTypes = [...new Set(state.cards.map((c) => c.group_type).filter(Boolean))];
  state.savedText = documentText();
  if (m.mapping === null && m.problems.length) notice(`The mapping file cannot be read:\n${m.problems.join("\n")}`, true);
}

const hasUnsavedWork = () => state.cards.length > 0 && documentText() !== state.savedText;

async function save() {
  const snapshot = documentText();
  // Only over the version this page read: another tab, `scaffold --write` or a `git pull` may
  // have changed the file since (412 then, with the file as it is now).
  const condition = state.etag ? { "If-Match": state.etag } : { "If-None-Match": "*" };
  const r = await api("PUT", "/api/mapping", snapshot, condition);
  $("#conflict").hidden = true;
  if (r.status === 412) {
    showConflict(r);
    return; // the verification still holds: "Keep mine" lets Save write this version
  }
  if (r.status === 422) {
    state.problems = r.data.problems;
    renderProblems();
    notice(r.data.error, true);
  } else if (!r.ok) {
    notice(r.data.error, true);
  } else {
    const backup = r.data.backup ? ` (previous file kept as ${r.data.backup})` : "";
    notice(`Saved to ${r.data.saved}${backup}.`);
    state.fileTypes = [...new Set(r.data.mapping.mappings.map((m) => m.group_type))];
    state.etag = r.headers.get("ETag");
    state.savedText = snapshot;
    showSource(true);
  }
  state.verifiedFor = null;
  updateButtons();
}

// The file changed since this page read it: reload it (losing the page's changes), merge the
// two, or keep the page's version (the next Save replaces the file; it is kept as .bak).
function showConflict(r) {
  const box = $("#conflict");
  const current = r.data.current;
  $("#conflict-text").textContent = r.data.error;
  box.hidden = false;
  $("#conflict-merge").hidden = !(current.exists && current.mapping && Array.isArray(current.mapping.mappings));
  $("#conflict-reload").onclick = () => {
    box.hidden = true;
    loadMapping(current, r.data.etag);
    notice(`Reloaded ${state.mappingFile} as it is now; your changes were discarded.`);
    render();
    changed();
  };
  $("#conflict-merge").onclick = () => {
    box.hidden = true;
    const merged = mergeDocuments(JSON.parse(state.savedText), documentOf(), current.mapping);
    state.etag = r.data.etag;
    state.savedText = JSON.stringify(normalised(current.mapping), null, 2);
    state.cards = cardsFrom(merged.document);
    const lines = [`Merged with ${state.mappingFile} as it is now; verify and save to write the result.`];
    if (merged.fromFile.length) lines.push(`From the file: ${merged.fromFile.join("; ")}.`);
    if (merged.conflicts.length) lines.push(`Changed on both sides, yours kept: ${merged.conflicts.join("; ")}.`);
    notice(lines.join("\n"), merged.conflicts.length > 0);
    render();
    changed();
  };
  $("#conflict-keep").onclick = () => {
    box.hidden = true;
    state.etag = current.exists ? r.data.etag : null;
    notice("Kept your version: Save replaces the file (its current version is kept as .bak).");
    updateButtons();
    $("#save").focus();
  };
  $("#conflict-reload").focus();
}

// -- config buttons ------------------------------------------------------------------------
async function copyConfig() {
  const text = documentText();
  try {
    await navigator.clipboard.writeText(text);
  } catch (_) {
    const area = document.createElement("textarea");
    area.value = text;
    document.body.append(area);
    area.select();
    document.execCommand("copy");
    area.remove();
  }
  notice("Mapping config copied to the clipboard.");
}

function exportConfig() {
  const url = URL.createObjectURL(new Blob([documentText() + "\n"], { type: "application/json" }));
  const link = document.createElement("a");
  link.href = url;
  link.download = "mapping.json";
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
  notice("Exported mapping.json.");
}

async function importConfig(file) {
  const text = await file.text();
  // The server parses and validates the file as `validate` would (same messages).
  const r = await api("POST", "/api/validate", text);
  if (!r.ok) {
    notice(`${file.name}: ${r.data.error.replace(/^request body is /, "")}`, true);
    return;
  }
  let imported;
  try {
    imported = JSON.parse(text);
  } catch (error) {
    // Python's JSON reader takes NaN and Infinity, the browser's does not.
    notice(`${file.name}: not valid JSON here: ${error.message}`, true);
    return;
  }
  if (hasUnsavedWork() && !window.confirm(`Import ${file.name}? It replaces the mappings shown, and your unsaved changes are lost.`)) {
    notice(`Import of ${file.name} cancelled.`);
    return;
  }
  state.cards = cardsFrom(imported);
  const problems = r.data.problems;
  // All of the file's problems, here: the panel checks the mappings as the form holds them, which
  // leaves out what the form cannot show (an unknown key and its "did you mean" hint).
  notice(
    problems.length
      ? `Imported ${file.name}: ${problems.length} problem${problems.length === 1 ? "" : "s"} in the file:\n`
        + problems.map((p) => `- ${p}`).join("\n")
      : `Imported ${file.name}: no problems.`,
    problems.length > 0,
  );
  render();
  changed();
}

// -- events --------------------------------------------------------------------------------
function cardOf(element) {
  const node = element.closest(".card");
  return node ? [state.cards[Number(node.dataset.index)], Number(node.dataset.index), node] : [null, -1, null];
}

function onInput(event) {
  const el = event.target;
  const [card, index, node] = cardOf(el);
  if (!card) return;
  if (el.classList.contains("group-type")) {
    card.group_type = el.value;
    $(".card-title", node).textContent = cardLabel(card, index);
    renderGroupTypes();
  } else if (el.classList.contains("prop-name")) {
    const p = card.properties[Number(el.closest(".prop").dataset.index)];
    p.property = el.value;
    p.named = el.value !== "";
  } else {
    return;
  }
  changed();
}

function onChange(event) {
  const el = event.target;
  const [card, index] = cardOf(el);
  if (!card) return;
  if (el.classList.contains("object")) {
    card.object = el.value;
    card.group_name_field = "";
    for (const p of card.properties) {
      p.field = "";
      if (!p.named) p.property = "";
    }
    render(`.card[data-index="${index}"] .object`);
  } else if (el.classList.contains("name-field")) {
    card.group_name_field = el.value;
    renderNameWarnings(el.closest(".card"), card);
  } else if (el.classList.contains("prop-field")) {
    const row = el.closest(".prop");
    const p = card.properties[Number(row.dataset.index)];
    p.field = el.value;
    const info = state.fieldInfo.get(card.object);
    const choice = info && info.get(el.value);
    if (!p.named) {
      p.property = choice ? choice.property : el.value;
      $(".prop-name", row).value = p.property;
    }
  } else {
    return;
  }
  changed();
}

function onClick(event) {
  const button = event.target.closest("button");
  if (!button) return;
  const [card, index] = cardOf(button);
  if (!card) return;
  const row = button.closest(".prop");
  const i = row ? Number(row.dataset.index) : -1;
  const at = (sel) => `.card[data-index="${index}"] ${sel}`;
  if (button.classList.contains("delete-mapping")) {
    const filled = card.object || card.group_type || card.group_name_field || card.properties.length;
    const what = `${cardLabel(card, index)} and its ${card.properties.length} group propert${card.properties.length === 1 ? "y" : "ies"}`;
    if (filled && !window.confirm(`Delete mapping ${what}? (The file changes only when you save.)`)) return;
    state.cards.splice(index, 1);
    render(state.cards.length ? `.card[data-index="${Math.max(0, index - 1)}"] .object` : null);
    if (!state.cards.length) $("#add-mapping").focus();
  } else if (button.classList.contains("add-property")) {
    card.properties.push({ field: "", property: "", named: false });
    render(at(`.prop[data-index="${card.properties.length - 1}"] .prop-field`));
  } else if (button.classList.contains("up") && i > 0) {
    [card.properties[i - 1], card.properties[i]] = [card.properties[i], card.properties[i - 1]];
    render(at(`.prop[data-index="${i - 1}"] ${i - 1 === 0 ? ".down" : ".up"}`));
  } else if (button.classList.contains("down") && i < card.properties.length - 1) {
    [card.properties[i + 1], card.properties[i]] = [card.properties[i], card.properties[i + 1]];
    const last = i + 1 === card.properties.length - 1;
    render(at(`.prop[data-index="${i + 1}"] ${last ? ".up" : ".down"}`));
  } else if (button.classList.contains("remove")) {
    card.properties.splice(i, 1);
    const next = Math.min(i, card.properties.length - 1);
    render(next >= 0 ? at(`.prop[data-index="${next}"] .prop-field`) : at(".add-property"));
  } else {
    return;
  }
  changed();
}

async function setCadence(event) {
  const r = await api("PUT", "/api/schedule", { cadence: event.target.value });
  if (!r.ok) {
    notice(r.data.error, true);
    return;
  }
  notice(`Sync cadence set to ${r.data.cadence} in ${r.data.project} (${r.data.schedules.join(", ")}).`);
  showRunner(r.data.runs_it);
}

function showCadence(data) {
  const select = $("#cadence");
  const note = $("#cadence-note");
  if (!data.available) {
    select.disabled = true;
    note.textContent = data.project ? "No schedule in meltano.yml runs this tap." : "Not under Meltano: no schedule to set.";
    note.title = "The cadence is the interval of the Meltano schedule that runs this tap; "
      + "start the editor with `meltano invoke tap-salesforce-groups:editor` to change it here.";
    return;
  }
  select.disabled = false;
  select.value = data.cadence || "daily";
  note.textContent = `Schedule: ${data.schedules.join(", ")}`;
  showRunner(data.runs_it);
}
// A schedule in meltano.yml runs nothing by itself: say what runs it (Dagster, or the cron line).
function showRunner(runner) {
  const line = $("#cadence-runner");
  line.textContent = runner ? runner.text : "";
  if (runner && runner.cron) {
    const code = document.createElement("code");
    code.textContent = runner.cron;
    line.append(" ", code);
  }
}

async function start() {
  document.addEventListener("input", onInput);
  document.addEventListener("change", onChange);
  $("#cards").addEventListener("click", onClick);
  $("#add-mapping").addEventListener("click", () => {
    state.cards.push({ object: "", group_type: "", group_name_field: "", properties: [] });
    render(`.card[data-index="${state.cards.length - 1}"] .object`);
    changed();
  });
  $("#next").addEventListener("click", verify);
  $("#connect").addEventListener("click", connect);
  $("#preview").addEventListener("click", showPreview);
  $("#preview-close").addEventListener("click", () => { $("#preview-panel").hidden = true; });
  $("#save").addEventListener("click", save);
  $("#copy").addEventListener("click", copyConfig);
  $("#export").addEventListener("click", exportConfig);
  $("#import").addEventListener("click", () => $("#import-file").click());
  $("#import-file").addEventListener("change", (e) => {
    if (e.target.files[0]) importConfig(e.target.files[0]);
    e.target.value = "";
  });
  $("#cadence").addEventListener("change", setCadence);
  document.addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key === "s") {
      e.preventDefault();
      if (!$("#save").disabled) save();
    }
  });

  const [objects, mapping, schedule] = await Promise.all([
    api("GET", "/api/objects"),
    api("GET", "/api/mapping"),
    api("GET", "/api/schedule"),
    showConnection(),
  ]);
  if (!objects.ok && !objects.data.connect) notice(`Cannot list the org's objects: ${objects.data.error}`, true);
  state.objects = objects.ok ? objects.data.objects : [];
  if (schedule.ok) showCadence(schedule.data);
  else $("#cadence-note").textContent = schedule.data.error;
  if (mapping.ok) {
    loadMapping(mapping.data, mapping.headers.get("ETag"));
  } else {
    $("#source").textContent = `Cannot read the mapping: ${mapping.data.error}`;
    notice(`Cannot read the mapping: ${mapping.data.error}`, true);
  }
  render();
  changed();
}

// A last guard: whatever fails unexpectedly is said on the page, not only in the console.
window.addEventListener("unhandledrejection", (event) => {
  notice(`Unexpected error: ${event.reason && event.reason.message ? event.reason.message : event.reason}`, true);
});
document.addEventListener("DOMContentLoaded", start);
