// twinport's dashboard (docs/admin.md "The dashboard"): reads the admin API every 2 s and updates the page
// in place (rows and buttons are created once, so keyboard focus survives a refresh). Numbers come from
// /metrics as Prometheus reads them; states and health from /pools; the TLS share from /history.
'use strict';
(() => {
  const REFRESH_MS = 2000;
  const $ = (sel, root = document) => root.querySelector(sel);
  const el = (tag, attrs = {}, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  };

  let token = sessionStorage.getItem('twinport-admin-token') || '';

  async function api(path, init = {}) {
    const headers = { accept: 'application/json', ...(init.headers || {}) };
    if (token !== '') headers.authorization = `Bearer ${token}`;
    const res = await fetch(path, { ...init, headers });
    if (res.status === 401) {
      $('#token-form').hidden = false;
      throw new Error('the admin token is missing or wrong');
    }
    const type = res.headers.get('content-type') || '';
    const body = type.includes('json') ? await res.json() : await res.text();
    if (!res.ok) throw new Error((body && body.message) || `${res.status}`);
    return body;
  }

  function parseProm(text) {
    const out = [];
    for (const raw of text.split('\n')) {
      const line = raw.trim();
      if (line === '' || line.startsWith('#')) continue;
      const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)/.exec(line);
      if (m === null) continue;
      const labels = {};
      for (const l of (m[2] || '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[l[1]] = l[2].replace(/\\(.)/g, '$1');
      out.push({ name: m[1], labels, value: Number(m[3]) });
    }
    return out;
  }

  const fmt = new Intl.NumberFormat();

  // ── listeners ──────────────────────────────────────────────────────────────────────────────────
  const listenerCards = new Map();

  function listenerCard(name) {
    let card = listenerCards.get(name);
    if (card !== undefined) return card;
    const id = `listener-${listenerCards.size}`;
    const stat = (key, label) => el('div', {}, el('dt', { text: label }), el('dd', { 'data-stat': key, text: '0' }));
    const chart = el('div', { class: 'chart', role: 'img', 'aria-label': `TLS share of closed connections on ${name} over the last hour` });
    const reasons = el('tbody');
    const section = el(
      'section',
      { class: 'listener', 'data-listener': name, 'aria-labelledby': id },
      el('h3', { id, text: `Listener ${name}` }),
      el('dl', { class: 'stats' }, stat('active', 'Open now'), stat('accepted', 'Accepted'), stat('tls-share', 'TLS share, last hour')),
      chart,
      el('table', {}, el('caption', { text: `Close reasons on ${name}` }), el('thead', {}, el('tr', {}, el('th', { scope: 'col', text: 'Reason' }), el('th', { scope: 'col', class: 'num', text: 'Connections' }))), reasons),
    );
    $('#listeners').append(section);
    card = { section, chart, reasons, plot: undefined };
    listenerCards.set(name, card);
    return card;
  }

  function drawShare(card, name, history) {
    const xs = [];
    const ys = [];
    let tlsHour = 0;
    let plainHour = 0;
    const samples = history.samples;
    for (let i = 1; i < samples.length; i++) {
      const a = samples[i - 1].listeners[name] || { tls: 0, plaintext: 0 };
      const b = samples[i].listeners[name] || { tls: 0, plaintext: 0 };
      const tls = Math.max(0, b.tls - a.tls);
      const plain = Math.max(0, b.plaintext - a.plaintext);
      tlsHour += tls;
      plainHour += plain;
      xs.push(samples[i].t / 1000);
      ys.push(tls + plain === 0 ? null : (100 * tls) / (tls + plain));
    }
    $('[data-stat="tls-share"]', card.section).textContent = tlsHour + plainHour === 0 ? 'no traffic' : `${Math.round((100 * tlsHour) / (tlsHour + plainHour))} %`;
    if (typeof uPlot !== 'function') return;
    const width = Math.max(240, Math.min(card.section.clientWidth - 32, 900));
    if (card.plot === undefined) {
      card.plot = new uPlot(
        {
          width,
          height: 160,
          scales: { y: { range: [0, 100] } },
          series: [{}, { label: 'TLS %', stroke: '#0969da', fill: 'rgba(9,105,218,0.1)', spanGaps: false }],
          axes: [{}, { values: (_, ticks) => ticks.map((t) => `${t}%`) }],
        },
        [xs, ys],
        card.chart,
      );
    } else {
      card.plot.setSize({ width, height: 160 });
      card.plot.setData([xs, ys]);
    }
  }

  function renderListeners(samples, history) {
    const names = new Set();
    for (const s of samples) if (s.labels.listener !== undefined) names.add(s.labels.listener);
    for (const name of names) {
      const card = listenerCard(name);
      const active = samples.filter((s) => s.name === 'twinport_connections_active' && s.labels.listener === name).reduce((n, s) => n + s.value, 0);
      const accepted = samples.filter((s) => s.name === 'twinport_connections_accepted_total' && s.labels.listener === name).reduce((n, s) => n + s.value, 0);
      $('[data-stat="active"]', card.section).textContent = fmt.format(active);
      $('[data-stat="accepted"]', card.section).textContent = fmt.format(accepted);
      const byReason = new Map();
      for (const s of samples) {
        if (s.name !== 'twinport_connections_total' || s.labels.listener !== name) continue;
        byReason.set(s.labels.reason, (byReason.get(s.labels.reason) || 0) + s.value);
      }
      const rows = [...byReason].sort((a, b) => b[1] - a[1]).map(([reason, n]) => el('tr', { 'data-reason': reason }, el('td', { text: reason }), el('td', { class: 'num', text: fmt.format(n) })));
      card.reasons.replaceChildren(...(rows.length > 0 ? rows : [el('tr', {}, el('td', { colspan: '2', text: 'none closed yet' }))]));
      if (history !== undefined) drawShare(card, name, history);
    }
  }

  // ── pools ──────────────────────────────────────────────────────────────────────────────────────
  const poolTables = new Map();
  const serverRows = new Map();

  async function setState(pool, server, state) {
    try {
      const r = await api(`/pools/${encodeURIComponent(pool)}/servers/${encodeURIComponent(server)}/state`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ state }),
      });
      $('#message').textContent = `${r.pool} ${r.server} is now ${r.state}.`;
      await refresh();
    } catch (e) {
      $('#message').textContent = `Could not set ${server} in ${pool} to ${state}: ${e.message}`;
    }
  }

  function poolTable(name) {
    let t = poolTables.get(name);
    if (t !== undefined) return t;
    const body = el('tbody');
    const cols = ['Server', 'State', 'Health', 'Weight', 'Open', 'Total', 'Last check', 'Actions'];
    const table = el(
      'table',
      { class: 'servers', 'data-pool': name },
      el('caption', { text: `Pool ${name}` }),
      el('thead', {}, el('tr', {}, ...cols.map((c) => el('th', { scope: 'col', class: ['Weight', 'Open', 'Total'].includes(c) ? 'num' : '', text: c })))),
      body,
    );
    $('#pools').append(table);
    t = { table, body };
    poolTables.set(name, t);
    return t;
  }

  function serverRow(pool, address) {
    const key = `${pool}\u0000${address}`;
    let r = serverRows.get(key);
    if (r !== undefined) return r;
    const cell = (field, label, cls = '') => el('td', { 'data-field': field, 'data-label': label, class: cls });
    const drain = el('button', { type: 'button', 'data-action': 'drain', 'aria-label': `Drain ${address} in pool ${pool}`, text: 'Drain' });
    const ready = el('button', { type: 'button', 'data-action': 'ready', 'aria-label': `Ready ${address} in pool ${pool}`, text: 'Ready' });
    drain.addEventListener('click', () => void setState(pool, address, 'drain'));
    ready.addEventListener('click', () => void setState(pool, address, 'ready'));
    const row = el(
      'tr',
      { 'data-server': address },
      el('th', { scope: 'row', 'data-label': 'Server', text: address }),
      cell('state', 'State'),
      cell('health', 'Health'),
      cell('weight', 'Weight', 'num'),
      cell('active', 'Open', 'num'),
      cell('total', 'Total', 'num'),
      cell('check', 'Last check'),
      el('td', { 'data-label': 'Actions' }, drain, ready),
    );
    poolTable(pool).body.append(row);
    r = { row, drain, ready };
    serverRows.set(key, r);
    return r;
  }

  const badge = (cls, text) => el('span', { class: `badge ${cls}`, text });

  function renderPools(pools) {
    for (const p of pools) {
      for (const s of p.servers) {
        const r = serverRow(p.name, s.address);
        const f = (field) => $(`[data-field="${field}"]`, r.row);
        f('state').replaceChildren(badge(s.state, s.state));
        const health = s.health.up ? 'up' : 'down';
        f('health').replaceChildren(badge(health, s.health.checked ? health : `${health} (unchecked)`));
        f('weight').textContent = String(s.weight);
        f('active').textContent = fmt.format(s.activeConnections);
        f('total').textContent = fmt.format(s.totalConnections);
        f('check').textContent = (s.health.active && s.health.active.lastCheck && s.health.active.lastCheck.detail) || '';
        r.drain.disabled = s.state === 'drain';
        r.ready.disabled = s.state === 'ready';
      }
    }
  }

  // ── migration ──────────────────────────────────────────────────────────────────────────────────
  function renderMigration(report) {
    const names = (report && report.names) || [];
    $('#migration-section').hidden = false;
    const rows = names.map((n) =>
      el(
        'tr',
        { 'data-name': n.name === null ? '(no Host)' : n.name },
        el('th', { scope: 'row', text: `${n.listener} ${n.name === null ? '(no Host)' : n.name}` }),
        el('td', {}, badge(n.verdict, n.verdict)),
        el('td', { class: 'num', text: fmt.format((n.plaintext && n.plaintext.clients) || 0) }),
        el('td', { class: 'num', text: fmt.format((n.plaintext && n.plaintext.connections) || 0) }),
      ),
    );
    $('#migration').replaceChildren(
      el(
        'table',
        {},
        el('caption', { text: 'Per name: may plaintext be turned off?' }),
        el('thead', {}, el('tr', {}, ...['Name', 'Verdict', 'Plaintext clients', 'Plaintext connections'].map((c) => el('th', { scope: 'col', text: c })))),
        el('tbody', {}, ...rows),
      ),
    );
  }

  // ── refresh ────────────────────────────────────────────────────────────────────────────────────
  async function refresh() {
    try {
      const [status, metricsText, pools, history] = await Promise.all([api('/status'), api('/metrics'), api('/pools'), api('/history').catch(() => undefined)]);
      $('#summary').textContent = `version ${status.version}, up ${status.uptimeSeconds} s, ${status.workers} worker(s), engine ${status.engine}, config ${status.configHash || '-'}, last reload ${status.lastReload === null ? 'none' : status.lastReload.ok ? 'ok' : 'FAILED'}`;
      renderListeners(parseProm(typeof metricsText === 'string' ? metricsText : ''), history);
      renderPools(pools.pools);
      if (status.migration === true) renderMigration(await api('/migration').catch(() => undefined));
      document.body.dataset.refreshed = String(Date.now());
    } catch (e) {
      $('#summary').textContent = `Cannot read the admin API: ${e.message}`;
    }
  }

  $('#token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('#token').value.trim();
    sessionStorage.setItem('twinport-admin-token', token);
    $('#token-form').hidden = true;
    void refresh();
  });

  void refresh();
  setInterval(() => void refresh(), REFRESH_MS);
})();
