// Campaigns in the dashboard (docs/campaigns.md): the list and the form clinicians make
// them with, one campaign's record (who received each occurrence, who did not and why),
// and a patient's messages page: their consent in plain words and what they were sent.

const REPEAT = [["", "Once"], ["1d", "Every day"], ["7d", "Every week"], ["14d", "Every two weeks"], ["28d", "Every four weeks"]];
const CHANNEL_NAMES = { email: "email", sms: "text message (SMS)", telegram: "Telegram" };
const STATE_NAMES = { delivered: "delivered", pending: "sending", failed: "failed", skipped: "not sent", sent: "sent", withdrawn: "not sent: consent withdrawn" };

function when(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

/** The views, over the app's helpers (`api`, `el`, `show`, `scroller`). */
export function campaignViews({ api, el, show, scroller }) {
  const error = (id) => el("p", { class: "error", role: "alert", id });

  async function campaignsPage() {
    const [list, cohorts] = await Promise.all([api("GET", "/api/v1/campaigns"), api("GET", "/api/v1/cohorts")]);
    const rows = list.campaigns.map((c) => {
      const last = c.occurrences[0];
      return el("tr", {},
        el("td", {}, el("a", { href: `#/campaign/${encodeURIComponent(c.id)}` }, c.name)),
        el("td", {}, c.cohort),
        el("td", {}, el("span", { class: `state state-${c.status}` }, c.status)),
        el("td", {}, when(c.next_at)),
        el("td", { class: "num" }, last ? `${last.sent} sent, ${last.skipped} not sent (${when(last.at)})` : "–"));
    });
    const field = (id, label, input) => el("label", { for: id }, label, input);
    const name = el("input", { id: "cp-name", required: true, maxlength: "100" });
    const cohort = el("select", { id: "cp-cohort", required: true },
      cohorts.cohorts.map((c) => el("option", { value: c.name }, `${c.name} (${c.patients.length})`)));
    const subject = el("input", { id: "cp-subject", required: true, maxlength: "200" });
    const message = el("textarea", { id: "cp-message", required: true, maxlength: "2000", rows: "5" });
    const start = el("input", { id: "cp-start", type: "datetime-local" });
    const repeat = el("select", { id: "cp-every" }, REPEAT.map(([v, t]) => el("option", { value: v }, t)));
    const until = el("input", { id: "cp-until", type: "date" });
    const problem = error("cp-error");
    const form = el("form", { id: "campaign-form", class: "stack", "aria-labelledby": "cp-title" },
      el("h2", { id: "cp-title" }, "New campaign"),
      el("p", { class: "muted" }, "Sent to the members of the cohort who agreed to receive messages, each on the channel they chose, with a link to stop them. Members outside your patients are left out."),
      field("cp-name", "Name (shown to patients)", name), field("cp-cohort", "Cohort", cohort),
      field("cp-subject", "Subject", subject), field("cp-message", "Message", message),
      field("cp-start", "First sent (empty: now)", start), field("cp-every", "Repeat", repeat),
      field("cp-until", "Until (optional)", until), problem,
      el("button", { class: "primary", type: "submit" }, "Create campaign"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      problem.textContent = "";
      const body = { name: name.value, cohort: cohort.value, subject: subject.value, message: message.value };
      if (start.value) body.start = new Date(start.value).toISOString();
      if (repeat.value) body.every = repeat.value;
      if (until.value) body.until = new Date(`${until.value}T23:59:59`).toISOString();
      try {
        const c = await api("POST", "/api/v1/campaigns", body);
        location.hash = `#/campaign/${encodeURIComponent(c.id)}`;
      } catch (e) {
        problem.textContent = e.message;
      }
    });
    show(el("h1", {}, "Campaigns"),
      rows.length
        ? scroller("campaigns", el("table", { id: "campaigns" },
          el("thead", {}, el("tr", {}, ["Campaign", "Cohort", "Status", "Next", "Last sent"].map((h) => el("th", { scope: "col" }, h)))),
          el("tbody", {}, rows)))
        : el("p", { id: "campaigns-empty" }, "No campaigns yet."),
      cohorts.cohorts.length ? form : el("p", { class: "muted" }, "Campaigns go to a cohort; an administrator makes cohorts."));
  }

  async function campaignPage(id) {
    const c = await api("GET", `/api/v1/campaigns/${encodeURIComponent(id)}`);
    const problem = error("cp-cancel-error");
    const cancel = el("button", { type: "button", id: "cp-cancel" }, "Cancel campaign");
    cancel.addEventListener("click", async () => {
      try {
        await api("POST", `/api/v1/campaigns/${encodeURIComponent(id)}/cancel`);
        await campaignPage(id);
      } catch (e) {
        problem.textContent = e.message;
      }
    });
    const occurrence = (o) => el("section", { class: "occurrence", "aria-labelledby": `run-${o.run}` },
      el("h3", { id: `run-${o.run}` }, `${when(o.at)}: ${o.sent} sent, ${o.skipped} not sent`),
      scroller(`run-${o.run}`, el("table", { class: "sends" },
        el("thead", {}, el("tr", {}, ["Patient", "Channel", "State", "Why not / error"].map((h) => el("th", { scope: "col" }, h)))),
        el("tbody", {}, o.sends.map((s) => el("tr", { "data-patient": s.patient, "data-state": s.state },
          el("td", {}, el("a", { href: `#/patient/${encodeURIComponent(s.patient)}` }, s.patient)),
          el("td", {}, s.channel ? CHANNEL_NAMES[s.channel] || s.channel : "–"),
          el("td", {}, STATE_NAMES[s.state] || s.state),
          el("td", {}, s.reason || s.error || "")))))));
    show(el("p", {}, el("a", { href: "#/campaigns" }, "All campaigns")),
      el("h1", {}, c.name),
      el("dl", { class: "facts", id: "campaign-facts" },
        el("dt", {}, "Status"), el("dd", { id: "cp-status" }, c.status),
        el("dt", {}, "Cohort"), el("dd", {}, c.cohort),
        el("dt", {}, "Repeat"), el("dd", {}, c.every ? `every ${c.every}` : "once"),
        el("dt", {}, "Next"), el("dd", {}, when(c.next_at)),
        el("dt", {}, "Subject"), el("dd", {}, c.subject)),
      el("blockquote", { class: "message" }, c.message),
      c.status === "cancelled" || c.status === "ended" ? null : cancel, problem,
      el("h2", {}, "Sent"),
      c.occurrences.length ? c.occurrences.map(occurrence) : el("p", { class: "muted" }, "Nothing sent yet."));
  }

  async function messagesPage(patient, self) {
    const path = `/api/v1/patients/${encodeURIComponent(patient)}/campaigns`;
    const d = await api("GET", path);
    const problem = error("consent-error");
    const you = self ? "You" : `Patient ${patient}`;
    const status = d.consent
      ? `${you} receive${self ? "" : "s"} messages from the care team by ${CHANNEL_NAMES[d.consent.channel]}, since ${when(d.consent.since)}.`
      : `${you} ${self ? "do" : "does"} not receive messages from the care team.`;
    const choices = d.channels.map((c) => {
      const id = `consent-${c.channel}`;
      const usable = c.configured && c.address_on_file;
      const why = !c.configured ? " (not offered here)" : !c.address_on_file ? " (no address on file)" : "";
      return el("label", { for: id, class: "check" },
        el("input", { type: "radio", name: "channel", id, value: c.channel, disabled: !usable,
          checked: d.consent && d.consent.channel === c.channel }),
        ` By ${CHANNEL_NAMES[c.channel]}${why}`);
    });
    const form = el("form", { id: "consent-form", class: "stack" },
      el("fieldset", {}, el("legend", {}, "Receive messages"), choices),
      problem,
      el("button", { class: "primary", type: "submit" }, "Save"));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      const picked = form.querySelector("input[name=channel]:checked");
      if (!picked) { problem.textContent = "Choose how to receive messages."; return; }
      try { await api("PUT", path, { channel: picked.value }); await messagesPage(patient, self); } catch (e) { problem.textContent = e.message; }
    });
    const stop = el("button", { type: "button", id: "consent-stop" }, "Stop all messages");
    stop.addEventListener("click", async () => {
      try { await api("PUT", path, { channel: null }); await messagesPage(patient, self); } catch (e) { problem.textContent = e.message; }
    });
    show(el("p", {}, el("a", { href: `#/patient/${encodeURIComponent(patient)}` }, `Patient ${patient}`)),
      el("h1", {}, "Messages from the care team"),
      el("p", { id: "consent-status" }, status),
      el("p", { class: "muted" }, "Messages are health tips and reminders sent to a group of patients. Alerts about health readings are separate and not affected."),
      form, d.consent ? stop : null,
      el("h2", {}, "Received"),
      d.messages.length
        ? el("ul", { id: "messages", class: "messages" }, d.messages.map((m) => el("li", {},
          el("h3", {}, m.subject), el("p", { class: "muted" }, `${m.name}, ${when(m.sent_at)}, by ${CHANNEL_NAMES[m.channel] || m.channel}`),
          el("p", { class: "message" }, m.message))))
        : el("p", { class: "muted", id: "messages-none" }, "No messages yet."));
  }

  return { campaignsPage, campaignPage, messagesPage };
}
