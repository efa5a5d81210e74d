"use strict";
// The patient page: every call goes to a service's public API with the patient's token.
// Nothing is kept but the token, in this tab only (sessionStorage).
(function () {
  const KEY = "caretrail.patient.token";
  const $ = (id) => document.getElementById(id);
  const setup = JSON.parse($("setup").textContent);
  const services = setup.services;
  const PKCE_KEY = "caretrail.patient.pkce";

  const KINDS = {
    Patient: "Personal details", Observation: "Test result or measurement",
    Condition: "Condition", MedicationStatement: "Medicine", AllergyIntolerance: "Allergy",
    Immunization: "Vaccination", DiagnosticReport: "Report", DocumentReference: "Document",
    Procedure: "Procedure", Encounter: "Visit", "*": "Everything",
  };
  const PURPOSES = {
    TREAT: "to treat you", ETREAT: "to treat you in an emergency",
    HPAYMT: "to bill you or your insurer", HOPERAT: "to run their practice",
    HRESCH: "for research", PATRQT: "because you asked them to",
  };
  const LABELS = {
    PSY: "mental health", SUD: "drug and substance use", HIV: "HIV", SEX: "sexual health",
    GDIS: "genetic information", ETH: "alcohol use",
  };
  const DIRECTIONS = { rising: "going up", falling: "going down", steady: "steady" };
  const SNOMED = "http://snomed.info/sct";
  const UCUM = "http://unitsofmeasure.org";
  const CVX = "http://hl7.org/fhir/sid/cvx";

  // --- signing in -------------------------------------------------------------------------

  function token() { return sessionStorage.getItem(KEY) || ""; }

  function claimsOf(jwt) {
    const part = (jwt.split(".")[1] || "").replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(atob(part));
  }

  function me() {
    try { return claimsOf(token()); } catch (e) { return null; }
  }

  function pid() { return encodeURIComponent(me().patient); }

  function signIn(pasted) {
    const jwt = pasted.trim().replace(/^Bearer\s+/i, "");
    let claims;
    try { claims = claimsOf(jwt); } catch (e) {
      throw new Error("That is not a sign-in token. Paste the whole token you were given.");
    }
    if (claims.role !== "patient" || !claims.patient) {
      throw new Error("This page is for patients, and that token is not a patient's.");
    }
    sessionStorage.setItem(KEY, jwt);
  }

  // --- signing in with the identity provider (authorization code + PKCE, RFC 7636) -------

  function randomText() {
    const bytes = crypto.getRandomValues(new Uint8Array(32));
    return base64url(bytes);
  }

  function base64url(bytes) {
    return btoa(String.fromCharCode(...new Uint8Array(bytes)))
      .replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  }

  async function discovery() {
    const response = await fetch(setup.oidc.issuer + "/.well-known/openid-configuration");
    if (!response.ok) throw new Error("The sign-in service does not answer right now.");
    return response.json();
  }

  function returnAddress() { return location.origin + location.pathname; }

  async function signInWithProvider() {
    const provider = await discovery();
    const verifier = randomText();
    const state = randomText();
    const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
    sessionStorage.setItem(PKCE_KEY, JSON.stringify({ verifier: verifier, state: state }));
    const query = new URLSearchParams({
      response_type: "code", client_id: setup.oidc.client_id, redirect_uri: returnAddress(),
      scope: setup.oidc.scope, state: state, code_challenge: base64url(digest),
      code_challenge_method: "S256",
    });
    location.assign(provider.authorization_endpoint + "?" + query.toString());
  }

  async function finishProviderSignIn(query) {
    const pending = JSON.parse(sessionStorage.getItem(PKCE_KEY) || "null");
    sessionStorage.removeItem(PKCE_KEY);
    history.replaceState(null, "", returnAddress());  // the code is used once, then forgotten
    if (query.get("error")) throw new Error("The sign-in was not completed: " + query.get("error"));
    if (!pending || query.get("state") !== pending.state) {
      throw new Error("That sign-in did not start here. Please sign in again.");
    }
    const provider = await discovery();
    const response = await fetch(provider.token_endpoint, {
      method: "POST",
      headers: { "Content-Type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code", code: query.get("code"),
        redirect_uri: returnAddress(), client_id: setup.oidc.client_id,
        code_verifier: pending.verifier,
      }),
    });
    if (!response.ok) throw new Error("The sign-in service refused the sign-in.");
    signIn((await response.json()).access_token);
  }

  function showSignedIn() {
    const claims = me();
    const signedIn = Boolean(claims && claims.patient);
    $("sign-in").classList.toggle("hidden", signedIn);
    $("main").classList.toggle("hidden", !signedIn);
    $("sign-out").classList.toggle("hidden", !signedIn);
    $("who").textContent = signedIn ? "Signed in as " + claims.sub : "Not signed in";
    return signedIn;
  }

  // --- talking to the services ------------------------------------------------------------

  function say(text, isError) {
    $("status").textContent = text;
    $("status").className = isError ? "error" : "";
  }

  async function call(service, path, options) {
    const opts = options || {};
    const headers = Object.assign({ "Authorization": "Bearer " + token(),
                                    "Accept": "application/json" }, opts.headers || {});
    if (opts.json !== undefined) headers["Content-Type"] = "application/json";
    const init = { method: opts.method || "GET", headers: headers };
    if (opts.json !== undefined) init.body = JSON.stringify(opts.json);
    let response;
    try {
      response = await fetch(services[service] + path, init);
    } catch (e) {
      throw new Error("The " + service + " service cannot be reached right now.");
    }
    if (!response.ok) throw await failure(response);
    return response;
  }

  async function failure(response) {
    let text = response.status + " " + response.statusText;
    try {
      const problem = await response.json();
      text = problem.title + (problem.detail ? ": " + problem.detail : "");
    } catch (e) { /* not a problem document */ }
    if (response.status === 401) text = "Your sign-in has expired or is not valid. " + text;
    const error = new Error(text);
    error.status = response.status;
    return error;
  }

  async function json(service, path, options) {
    const response = await call(service, path, options);
    return response.status === 204 ? null : response.json();
  }

  function guarded(action) {
    return Promise.resolve().then(action).catch((err) => say(err.message, true));
  }

  // --- building the lists -----------------------------------------------------------------

  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function button(label, className, onClick) {
    const node = el("button", className, label);
    node.type = "button";
    node.addEventListener("click", () => guarded(onClick));
    return node;
  }

  function fill(list, items, render, emptyText) {
    list.replaceChildren();
    for (const item of items) list.appendChild(render(item));
    if (!items.length) list.appendChild(el("li", "empty", emptyText));
  }

  function when(iso) {
    if (!iso) return "";
    const moment = new Date(iso);
    return isNaN(moment) ? iso : moment.toLocaleString();
  }

  function day(iso) {
    const moment = new Date(iso.length === 10 ? iso + "T00:00:00" : iso);
    return isNaN(moment) ? iso : moment.toLocaleDateString();
  }

  function who(actor, org) {
    const name = (actor || "").replace(/^[a-z]+:/, "");
    return org ? name + " (" + org + ")" : name;
  }

  // --- the chart --------------------------------------------------------------------------

  function conceptText(concept) {
    const c = Array.isArray(concept) ? concept[0] : concept;
    if (!c) return "";
    const coding = (c.coding || [])[0] || {};
    return c.text || coding.display || coding.code || "";
  }

  function valueText(r) {
    if (r.component && r.component.length) {
      return r.component.map((part) => conceptText(part.code) + " " + valueText(part))
        .join(", ");
    }
    if (r.valueQuantity) {
      const q = r.valueQuantity;
      return isSymptom(r) ? q.value + " out of 10" : q.value + " " + (q.unit || "");
    }
    if (r.valueInteger !== undefined) return String(r.valueInteger);
    if (r.valueString) return r.valueString;
    if (r.valueCodeableConcept) return conceptText(r.valueCodeableConcept);
    if (r.dosage && r.dosage[0] && r.dosage[0].text) return r.dosage[0].text;
    if (r.reaction && r.reaction[0]) return conceptText(r.reaction[0].manifestation);
    return "";
  }

  function isSymptom(r) {
    return Boolean(r.valueQuantity && r.valueQuantity.code === "{score}");
  }

  function recordWhen(record) {
    const r = record.resource;
    return r.effectiveDateTime || r.occurrenceDateTime || r.recordedDate || r.onsetDateTime ||
           record.created_at;
  }

  function chartItem(record) {
    const r = record.resource;
    const li = el("li");
    li.dataset.recordId = record.id;
    const isPhr = record.source === "phr";
    const name = conceptText(r.code || r.vaccineCode || r.medicationCodeableConcept || r.type);
    const kind = isSymptom(r) ? "Symptom" : (KINDS[record.category] || record.category);
    const what = el("div", "what", kind + (name ? ": " + name : ""));
    what.appendChild(el("span", "badge " + (isPhr ? "phr" : "ehr"),
                        isPhr ? "added by you (PHR)" : "from your provider (EHR)"));
    li.appendChild(what);
    const value = valueText(r);
    if (value) li.appendChild(el("div", "value", value));
    const author = isPhr ? "you" : who(record.author, record.author_org);
    li.appendChild(el("div", "meta", when(recordWhen(record)) + " · written by " + author));
    return li;
  }

  async function loadChart() {
    const page = await json("records", "/patients/" + pid() + "/records?limit=100");
    fill($("chart-list"), page.items, chartItem, "Your chart is empty.");
    offerTrends(page.items);
  }

  // --- adding to the chart ----------------------------------------------------------------

  function isoFromLocal(value) {
    return (value ? new Date(value) : new Date()).toISOString();
  }

  function required(id, what) {
    const value = $(id).value.trim();
    if (!value) { $(id).focus(); throw new Error("Please fill in " + what + "."); }
    return value;
  }

  function newSymptom(subject) {
    const select = $("symptom-code");
    const severityText = $("symptom-severity").value.trim();
    const severity = Number(severityText);
    if (severityText === "" || !Number.isInteger(severity) || severity < 0 || severity > 10) {
      $("symptom-severity").focus();
      throw new Error("Please give how bad it is as a whole number from 0 to 10.");
    }
    const label = select.options[select.selectedIndex].textContent;
    return {
      resourceType: "Observation", status: "final", subject: subject,
      category: [{ coding: [{ system: "http://terminology.hl7.org/CodeSystem/observation-category",
                              code: "survey" }] }],
      code: { coding: [{ system: SNOMED, code: select.value, display: label }], text: label },
      effectiveDateTime: isoFromLocal($("symptom-when").value),
      valueQuantity: { value: severity, unit: "score", system: UCUM, code: "{score}" },
    };
  }

  function newMedication(subject) {
    const resource = {
      resourceType: "MedicationStatement", status: "active", subject: subject,
      medicationCodeableConcept: { text: required("medication-name", "the medicine's name") },
      effectiveDateTime: new Date().toISOString(),
    };
    const dose = $("medication-dose").value.trim();
    if (dose) resource.dosage = [{ text: dose }];
    return resource;
  }

  function newAllergy(subject) {
    const resource = {
      resourceType: "AllergyIntolerance", patient: subject,
      // FHIR R4's ait-1: an allergy not entered in error has a clinical status.
      clinicalStatus: { coding: [{
        system: "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
        code: "active" }] },
      code: { text: required("allergy-substance", "what you are allergic to") },
      recordedDate: new Date().toISOString(),
    };
    const reaction = $("allergy-reaction").value.trim();
    if (reaction) resource.reaction = [{ manifestation: [{ text: reaction }] }];
    return resource;
  }

  function vaccine() {
    const select = $("immunization-code");
    if (!select.value) return { text: required("immunization-vaccine", "the vaccine's name") };
    // coded (CDC's CVX), so that a vaccination she records closes its reminder
    const name = select.options[select.selectedIndex].textContent;
    return { coding: [{ system: CVX, code: select.value, display: name }], text: name };
  }

  function newImmunization(subject) {
    return {
      resourceType: "Immunization", status: "completed", patient: subject,
      vaccineCode: vaccine(),
      occurrenceDateTime: required("immunization-date", "the date you had it"),
    };
  }

  function showVaccineName() {
    $("other-vaccine").classList.toggle("hidden", Boolean($("immunization-code").value));
  }

  const BUILDERS = { symptom: newSymptom, medication: newMedication, allergy: newAllergy,
                     immunization: newImmunization };

  function showAddFields() {
    const kind = $("add-kind").value;
    for (const set of document.querySelectorAll("#add-form fieldset[data-kind]")) {
      set.classList.toggle("hidden", set.dataset.kind !== kind);
    }
  }

  async function addToChart() {
    const kind = $("add-kind").value;
    const resource = BUILDERS[kind]({ reference: "Patient/" + me().patient });
    await json("records", "/patients/" + pid() + "/records", { method: "POST", json: resource });
    $("add-form").reset();
    showAddFields();
    showVaccineName();
    say("Added to your record.", false);
    await Promise.all([loadChart(), loadReminders()]);
  }

  // --- reminders --------------------------------------------------------------------------

  function notAvailable(list, err, what) {
    if (err.status !== 404) throw err;
    fill(list, [], null, what + " are not available on this server yet.");
  }

  function reminderItem(reminder) {
    const li = el("li");
    li.dataset.ruleId = reminder.rule_id;
    const what = el("div", "what", reminder.title);
    what.appendChild(el("span", "badge " + reminder.status, reminder.status));
    li.appendChild(what);
    const due = reminder.status === "snoozed" && reminder.snoozed_until
      ? "Snoozed until " + day(reminder.snoozed_until) : "Due " + day(reminder.due_date);
    const evidence = (reminder.evidence || []).length;
    li.appendChild(el("div", "meta", reminder.status === "done"
      ? "Done: " + evidence + " " + (evidence === 1 ? "entry" : "entries") +
        " in your chart. Next due " + day(reminder.due_date)
      : due));
    if (reminder.source && reminder.source.url) {
      const link = el("a", null, "Why: " + reminder.source.title);
      link.href = reminder.source.url;
      link.rel = "noopener noreferrer";
      link.target = "_blank";
      li.appendChild(link);
    }
    if (reminder.status === "due" || reminder.status === "overdue") {
      li.appendChild(reminderActions(reminder));
    }
    return li;
  }

  function reminderActions(reminder) {
    const path = "/patients/" + pid() + "/reminders/" + encodeURIComponent(reminder.rule_id);
    const actions = el("div", "actions");
    const label = el("label", null, "Remind me again on ");
    const until = el("input");
    until.type = "date";
    label.appendChild(until);
    actions.appendChild(label);
    actions.appendChild(button("Snooze", "secondary", async () => {
      if (!until.value) { until.focus(); throw new Error("Please pick a date to be reminded."); }
      await json("records", path + "/snooze", { method: "POST", json: { until: until.value } });
      await loadReminders();
    }));
    actions.appendChild(button("Dismiss", "secondary", async () => {
      await json("records", path + "/dismiss", { method: "POST" });
      await loadReminders();
    }));
    return actions;
  }

  async function loadReminders() {
    try {
      const body = await json("records", "/patients/" + pid() + "/reminders");
      fill($("reminder-list"), body.reminders, reminderItem, "Nothing is due.");
    } catch (err) {
      notAvailable($("reminder-list"), err, "Reminders");
    }
  }

  // --- trends -----------------------------------------------------------------------------

  function offerTrends(records) {
    const select = $("trend-code");
    const chosen = select.value;
    const seen = new Map();
    for (const record of records) {
      if (record.category !== "Observation") continue;
      // a panel (blood pressure) is trended by its parts (systolic, diastolic)
      const parts = record.resource.component || [];
      const concepts = parts.length ? parts.map((c) => c.code) : [record.resource.code];
      for (const concept of concepts) {
        const coding = ((concept || {}).coding || []).find((c) => c.system && c.code);
        if (coding) seen.set(coding.system + "|" + coding.code, conceptText(concept));
      }
    }
    select.replaceChildren();
    for (const [code, label] of seen) {
      const option = el("option", null, label);
      option.value = code;
      select.appendChild(option);
    }
    if (seen.has(chosen)) select.value = chosen;
    $("trend-button").disabled = seen.size === 0;
    if (!seen.size) $("trend-summary").textContent = "Nothing measured yet to show a trend of.";
  }

  function trendSummary(body) {
    const s = body.summary;
    const name = body.code.display || body.code.code;
    if (!s) return name + ": no values in your chart yet.";
    const unit = body.unit === "{score}" ? " out of 10" : " " + (body.unit || "");
    return name + ": lowest " + s.min + unit + ", highest " +
           s.max + unit + ", last " + s.last + unit + " — " + (DIRECTIONS[s.direction] || s.direction) + " (" +
           body.points.length + " entries)";
  }

  async function showTrend() {
    const path = "/patients/" + pid() + "/trends?code=" + encodeURIComponent($("trend-code").value);
    $("trend-picture").replaceChildren();
    try {
      const body = await json("records", path);
      $("trend-summary").textContent = trendSummary(body);
      if (!body.points.length) return;
      $("trend-picture").textContent = "Drawing the chart…";
      const svg = await call("records", path, { headers: { "Accept": "image/svg+xml" } });
      const img = el("img");
      img.src = URL.createObjectURL(await svg.blob());
      img.alt = "Chart of " + $("trend-summary").textContent;
      $("trend-picture").replaceChildren(img);
    } catch (err) {
      if (err.status !== 404) throw err;
      $("trend-summary").textContent = "Trends are not available on this server yet.";
    }
  }

  // --- consents ---------------------------------------------------------------------------

  function kindsText(categories) {
    return categories.map((c) => (KINDS[c] || c).toLowerCase()).join(", ");
  }

  function consentItem(consent) {
    const li = el("li");
    li.dataset.consentId = consent.id;
    const grantee = consent.grantee.id + (consent.grantee.type === "organization"
      ? " (a practice or hospital)" : " (a professional)");
    let text = grantee + " may see your " + kindsText(consent.categories);
    if (consent.security_labels && consent.security_labels.length) {
      text += ", including " + consent.security_labels.map((l) => LABELS[l] || l).join(", ");
    }
    li.appendChild(el("div", "what", text + ", " +
                      consent.purposes.map((p) => PURPOSES[p] || p).join(" or ")));
    const ends = consent.status === "active" ? "Ends " : "Was to end ";
    const status = consent.status === "active" ? "active" : consent.status;
    li.appendChild(el("div", "meta", "From " + when(consent.period.start) + " · " + ends +
                      when(consent.period.end) + " · " + status));
    if (consent.status === "active") {
      li.appendChild(button("Stop sharing", "danger", async () => {
        await json("consent", "/consents/" + encodeURIComponent(consent.id) + "/revoke",
                   { method: "POST" });
        say("You stopped sharing with " + consent.grantee.id + ".", false);
        await loadConsents();
      }));
    }
    return li;
  }

  async function loadConsents() {
    const page = await json("consent", "/patients/" + pid() + "/consents?limit=100");
    fill($("consent-list"), page.items, consentItem, "You are not sharing your records.");
  }

  function ticked(id) {
    return Array.from(document.querySelectorAll("#" + id + " input:checked"))
      .map((box) => box.value);
  }

  function grantFromForm() {
    let categories = ticked("grant-categories");
    if (categories.includes("*")) categories = ["*"];
    const until = $("grant-until").value;
    return {
      grantee: { type: $("grantee-type").value, id: $("grantee-id").value.trim() },
      actions: ["read"], categories: categories, security_labels: ticked("grant-labels"),
      purposes: [$("grant-purpose").value],
      // the whole of the last day, in the patient's own time zone
      period: { end: until ? new Date(until + "T23:59:59").toISOString() : "" },
    };
  }

  function describeGrant() {
    const g = grantFromForm();
    if (!g.grantee.id || !g.categories.length || !g.period.end) {
      $("grant-summary").textContent = "";
      return;
    }
    $("grant-summary").textContent = g.grantee.id + " will be able to see your " +
      kindsText(g.categories) + ", " + PURPOSES[g.purposes[0]] + ", until the end of " +
      day($("grant-until").value) + ". You can stop this at any time.";
  }

  async function grant() {
    const body = grantFromForm();
    if (!body.grantee.id) { $("grantee-id").focus(); throw new Error("Please say who."); }
    if (!body.categories.length) throw new Error("Please tick at least one kind of record.");
    if (!body.period.end) { $("grant-until").focus(); throw new Error("Please pick an end date."); }
    await json("consent", "/patients/" + pid() + "/consents", { method: "POST", json: body });
    say("You now share with " + body.grantee.id + ".", false);
    $("grant-form").reset();
    defaultGrantEnd();
    await loadConsents();
  }

  function defaultGrantEnd() {
    const end = new Date(Date.now() + 30 * 24 * 3600 * 1000);
    $("grant-until").value = end.toISOString().slice(0, 10);
    describeGrant();
  }

  // --- who accessed my data ---------------------------------------------------------------

  function disclosureItem(d) {
    const li = el("li", d.break_glass_reason ? "break-glass" : "");
    li.dataset.entryId = d.entry_id;
    const refused = d.outcome === "deny";
    const kinds = d.categories && d.categories.length ? kindsText(d.categories) : "records";
    const verb = d.type.indexOf("exported") >= 0 ? " exported your " : " opened your ";
    const what = el("div", "what", refused
      ? who(d.actor, d.org) + " tried to open your " + kinds + " and was refused"
      : d.action === "open-break-glass-note"
        ? who(d.actor, d.org) + " read the note of an emergency access to your records, to review it"
        : who(d.actor, d.org) + verb + kinds);
    if (d.break_glass_reason) what.appendChild(el("span", "badge flag", "Emergency access"));
    if (refused) what.appendChild(el("span", "badge refused", "refused"));
    li.appendChild(what);
    let basis = d.purpose ? (PURPOSES[d.purpose] || d.purpose) : "";
    // The reason in words (a code's display); older accesses gave free text, shown as given.
    if (d.break_glass_reason) {
      basis += " · emergency access, reason given: " +
               (d.break_glass_reason_display || d.break_glass_reason);
    }
    else if (d.consent_ids && d.consent_ids.length) basis += " · under your consent";
    li.appendChild(el("div", "meta", when(d.time) + (basis ? " · " + basis : "")));
    return li;
  }

  async function loadDisclosures() {
    const page = await json("audit", "/audit/patients/" + pid() + "/disclosures?limit=100");
    const items = page.items.slice().sort((a, b) => (a.time < b.time ? 1 : -1));
    fill($("disclosure-list"), items, disclosureItem, "No one else has opened your records.");
  }

  // --- notifications ----------------------------------------------------------------------

  function notificationItem(n) {
    const li = el("li", (n.read_at ? "" : "unread") + (n.urgent ? " urgent" : ""));
    li.dataset.notificationId = n.id;
    const title = el("div", "what", n.title);
    if (n.urgent) title.appendChild(el("span", "badge flag", "urgent"));
    if (!n.read_at) title.appendChild(el("span", "badge", "new"));
    li.appendChild(title);
    li.appendChild(el("div", null, n.body));
    li.appendChild(el("div", "meta", when(n.occurred_at || n.created_at)));
    if (!n.read_at) {
      li.appendChild(button("Mark as read", "secondary", async () => {
        await json("notify", "/patients/" + pid() + "/notifications/" +
                   encodeURIComponent(n.id) + "/read", { method: "POST" });
        await loadNotifications();
      }));
    }
    return li;
  }

  async function loadNotifications() {
    const page = await json("notify", "/patients/" + pid() + "/notifications?limit=50");
    fill($("notification-list"), page.items, notificationItem, "No notifications.");
  }

  // --- wiring -----------------------------------------------------------------------------

  function loadEverything() {
    for (const load of [loadChart, loadReminders, loadConsents, loadDisclosures,
                        loadNotifications]) {
      guarded(load);
    }
  }

  function onSubmit(id, action) {
    $(id).addEventListener("submit", (event) => {
      event.preventDefault();
      guarded(action);
    });
  }

  onSubmit("sign-in-form", () => {
    signIn($("token").value);
    $("token").value = "";
    showSignedIn();
    say("You are signed in.", false);
    $("main").focus();
    loadEverything();
  });
  $("sign-out").addEventListener("click", () => {
    sessionStorage.removeItem(KEY);
    showSignedIn();
    say("You are signed out.", false);
  });
  onSubmit("add-form", addToChart);
  onSubmit("trend-form", showTrend);
  onSubmit("grant-form", grant);
  $("add-kind").addEventListener("change", showAddFields);
  $("immunization-code").addEventListener("change", showVaccineName);
  $("grant-form").addEventListener("input", describeGrant);
  $("chart-refresh").addEventListener("click", () => guarded(loadChart));
  $("disclosures-refresh").addEventListener("click", () => guarded(loadDisclosures));
  $("notifications-refresh").addEventListener("click", () => guarded(loadNotifications));

  function start() {
    if (showSignedIn()) loadEverything();
  }

  defaultGrantEnd();
  showAddFields();
  const query = new URLSearchParams(location.search);
  if (setup.oidc) {
    $("sign-in-provider").addEventListener("click", () => guarded(signInWithProvider));
  }
  if (setup.oidc && (query.has("code") || query.has("error"))) {
    guarded(async () => {
      await finishProviderSignIn(query);
      say("You are signed in.", false);
    }).then(start);
  } else {
    start();
  }
})();
