// A scripted stand-in for a person at a browser: opens the URL, follows redirects, keeps
// cookies, fills the provider's forms (login as $OIDC_TEST_USER, consent, device code
// confirmation) and finally follows the redirect to airlock's loopback listener.
//
//   OIDC_TEST_USER=alice node browser.mjs URL
//
// Used as $BROWSER by the tests (so `airlock login` itself launches it) and directly for the
// device flow's verification URL. Exits 0 when the flow reached its end, 1 otherwise.

const start = process.argv[2];
const user = process.env.OIDC_TEST_USER || 'alice';
if (!start) {
  console.error('usage: node browser.mjs URL');
  process.exit(2);
}
const origin = new URL(start).origin;
const jar = new Map();

function decode(s) {
  return s.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

function attr(tag, name) {
  const m = tag.match(new RegExp(`\\s${name}="([^"]*)"`, 'i'));
  return m ? decode(m[1]) : undefined;
}

function remember(response) {
  for (const line of response.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    const name = pair.slice(0, eq).trim();
    const value = pair.slice(eq + 1).trim();
    const expired = attrs.some((a) => /^\s*expires=/i.test(a) && Date.parse(a.split('=')[1]) < Date.now());
    if (expired || value === '') jar.delete(name); else jar.set(name, value);
  }
}

function form(html) {
  const open = html.match(/<form[^>]*>/i);
  if (!open) return undefined;
  const rest = html.slice(open.index);
  const body = rest.slice(0, rest.search(/<\/form>/i) + 7 || rest.length);
  const fields = new URLSearchParams();
  for (const [tag] of body.matchAll(/<input[^>]*>/gi)) {
    const name = attr(tag, 'name');
    if (!name) continue;
    if (name === 'login') fields.set(name, user);
    else if (name === 'password') fields.set(name, 'any-password');
    else fields.set(name, attr(tag, 'value') ?? '');
  }
  return { action: attr(open[0], 'action') || '', method: (attr(open[0], 'method') || 'get').toUpperCase(), fields };
}

let url = start;
let method = 'GET';
let body;
for (let step = 0; step < 40; step += 1) {
  const headers = { cookie: [...jar].map(([k, v]) => `${k}=${v}`).join('; ') };
  if (body) headers['content-type'] = 'application/x-www-form-urlencoded';
  const response = await fetch(url, { method, body, headers, redirect: 'manual' });
  remember(response);
  const text = await response.text();
  if (response.status >= 300 && response.status < 400) {
    const next = new URL(response.headers.get('location'), url);
    method = 'GET';
    body = undefined;
    if (next.origin !== origin) {
      // The redirect back to the client (airlock's loopback listener).
      const done = await fetch(next, { redirect: 'manual' });
      console.log(`redirected to the client: ${done.status} ${(await done.text()).slice(0, 200)}`);
      process.exit(done.ok ? 0 : 1);
    }
    url = next.href;
    continue;
  }
  if (response.status !== 200) {
    console.error(`${method} ${url}: ${response.status} ${text.slice(0, 500)}`);
    process.exit(1);
  }
  const f = form(text);
  if (!f) {
    // The device flow ends on the provider's success page.
    const title = text.match(/<title>([^<]*)<\/title>/i);
    console.log(`finished: ${title ? title[1] : text.slice(0, 200)}`);
    process.exit(/success/i.test(text) ? 0 : 1);
  }
  url = new URL(f.action || url, url).href;
  method = f.method;
  body = method === 'POST' ? f.fields.toString() : undefined;
  if (method === 'GET') url = `${url.split('?')[0]}?${f.fields}`;
}
console.error('gave up after 40 steps');
process.exit(1);
