// Single sign-on against a real OpenID provider (oidc-provider, a certified
// implementation), in real Chromium. Started by tests/tests/e2e/console.rs with a JSON file:
// the provider's port, TLS certificate and key, the client registered for the control
// plane, and the control plane's address. The provider runs in this process so that a
// test can make it misbehave: re-sign the ID token with another audience, an expiry in
// the past, another nonce or another key. The control plane must refuse each.
import Provider from 'oidc-provider';
import { SignJWT, decodeJwt, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK } from 'jose';
import { readFileSync } from 'node:fs';
import https from 'node:https';
import { expect, start } from './harness.mjs';

// The refusals this walk-through asks for: the control plane's callback answering a
// forged or unknown sign-in with 401.
function expected(r) {
  return r.status() === 401 && new URL(r.url()).pathname === '/console/oidc/callback';
}
// Each sign-in runs in a context of its own (newContext); the first one is not used.
const { cfg, ctx: unused, errors, newContext, shot, finish } = await start({ expected, viewport: { width: 1280, height: 800 } });
await unused.close();
const out = { refusals: {} };

// The provider's signing key (RS256) and a stranger's key with the same kid.
const { privateKey } = await generateKeyPair('RS256', { extractable: true });
const jwk = { ...(await exportJWK(privateKey)), kid: 'k1', alg: 'RS256', use: 'sig' };
const stranger = (await generateKeyPair('RS256', { extractable: true })).privateKey;

const issuer = `https://localhost:${cfg.port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: cfg.client_id,
    client_secret: cfg.client_secret,
    redirect_uris: [cfg.redirect_uri],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  jwks: { keys: [jwk] },
  pkce: { required: () => true },
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['preferred_username'] },
  cookies: { keys: ['outpost-test-cookie-key'] },
  ttl: { Interaction: 600, Session: 3600, Grant: 3600, AccessToken: 600, IdToken: 600 },
  findAccount: async (_ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: `sub-${id}`, email: `${id}@example.com`, email_verified: true, preferred_username: id }),
  }),
});

// What the test makes the provider do to the next ID token it issues.
let tamper = null;
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === '/token' && tamper && ctx.body && ctx.body.id_token) {
    const claims = decodeJwt(ctx.body.id_token);
    const header = decodeProtectedHeader(ctx.body.id_token);
    const now = Math.floor(Date.now() / 1000);
    let key = await importJWK(jwk, 'RS256');
    if (tamper === 'audience') claims.aud = 'some-other-client';
    if (tamper === 'expired') { claims.iat = now - 7200; claims.exp = now - 3600; }
    if (tamper === 'nonce') claims.nonce = 'not-the-nonce-we-sent';
    if (tamper === 'signature') key = stranger;
    ctx.body.id_token = await new SignJWT(claims).setProtectedHeader({ alg: header.alg, kid: header.kid }).sign(key);
  }
});

const server = https.createServer({ cert: readFileSync(cfg.cert), key: readFileSync(cfg.key) }, provider.callback());
await new Promise((r) => server.listen(cfg.port, '127.0.0.1', r));
console.log('provider listening at ' + issuer);

let current = null;
process.on('unhandledRejection', async (e) => {
  console.error(String(e));
  if (current) {
    console.error('page at ' + current.url() + ':\n' + (await current.content()).slice(0, 3000));
    await current.screenshot({ path: `${cfg.screenshots}/failure.png` }).catch(() => {});
  }
  process.exit(1);
});

// One sign-in at the provider, from the console's button; returns the page where the
// browser lands back at the control plane.
async function ssoFlow(user, { forgeState = false } = {}) {
  const ctx = await newContext();
  const page = await ctx.newPage();
  current = page;
  await page.route('https://fonts.googleapis.com/**', (r) => r.abort());
  await page.goto(cfg.base_url + '/console/login');
  await page.click('#sso');
  await page.waitForURL(new RegExp('^' + issuer));
  if (forgeState) {
    // The answer that comes back is not for the sign-in this browser started (as when
    // an attacker sends the victim the callback of their own sign-in).
    await ctx.clearCookies({ name: '__Host-outpost_oidc' });
    await ctx.addCookies([{ name: '__Host-outpost_oidc', value: 'state-of-another-sign-in', url: cfg.base_url + '/', secure: true }]);
  }
  await page.fill('input[name=login]', user);
  await page.fill('input[name=password]', 'any');
  await page.click('button[type=submit]');
  // The provider asks for consent once per client.
  await page.waitForURL((u) => u.href.startsWith(cfg.base_url) || u.href.includes('/interaction/'));
  if (page.url().startsWith(issuer)) {
    await page.waitForSelector('button[type=submit]');
    await Promise.all([page.waitForURL((u) => u.href.startsWith(cfg.base_url)), page.click('button[type=submit]')]);
  }
  return { ctx, page };
}

async function refused(name, opts, needle) {
  tamper = opts.tamper || null;
  const { ctx, page } = await ssoFlow(opts.user || 'alice', opts);
  await page.waitForSelector('main .error').catch(async (e) => {
    throw new Error(`${e.message}\nat ${page.url()}:\n${(await page.content()).slice(0, 2000)}`);
  });
  const msg = await page.textContent('main .error');
  expect(msg.includes(needle), `${name}: refused with "${needle}" (${msg})`);
  expect(!(await ctx.cookies()).some((c) => c.name === '__Host-outpost_session' && c.value), `${name}: no session cookie`);
  const res = await page.goto(cfg.base_url + '/console/projects');
  expect(res.url().endsWith('/console/login'), `${name}: not signed in`);
  await shot(`refused-${name}`, page);
  out.refusals[name] = msg;
  await ctx.close();
  tamper = null;
}

async function done() {
  expect(errors.length === 0, 'no page errors: ' + errors.join('; '));
  await finish(out);
  server.close();
  console.log('all single sign-on checks passed');
  process.exit(0);
}

if (cfg.scenario === 'existing-only') {
  // No default role: bob, whom an admin added, signs in with his role; mallory does not.
  const { ctx, page } = await ssoFlow('bob');
  await page.waitForURL(/\/console\/(agents|projects)$/);
  expect((await page.textContent('#who')) === 'bob@example.com', 'bob, added by an admin, signs in by single sign-on');
  expect((await page.textContent('.who .badge')) === 'editor', 'with the role the admin gave him');
  await ctx.close();
  await refused('unknown-user', { user: 'mallory' }, 'there is no Outpost user mallory@example.com');
  await done();
}

// The happy path: alice@example.com is created with the default role and signed in.
{
  const { ctx, page } = await ssoFlow('alice');
  await page.waitForURL(/\/console\/(agents|projects)$/).catch(async (e) => {
    throw new Error(`${e.message}\nat ${page.url()}:\n${(await page.content()).slice(0, 2000)}`);
  });
  expect((await page.textContent('#who')) === 'alice@example.com', 'alice is signed in by single sign-on');
  expect((await page.textContent('.who .badge')) === cfg.default_role, `with the default role ${cfg.default_role}`);
  const cookies = await ctx.cookies();
  const s = cookies.find((c) => c.name === '__Host-outpost_session');
  expect(s && s.httpOnly && s.secure && s.sameSite === 'Strict', 'the SSO session cookie is Secure, HttpOnly, SameSite=Strict');
  expect(!cookies.some((c) => c.name === '__Host-outpost_oidc' && c.value), 'the one-time state cookie is cleared');
  await shot('01-sso-signed-in', page);
  await Promise.all([page.waitForURL(/\/console\/login$/), page.click('button[data-signout]')]);
  const again = await page.goto(cfg.base_url + '/console/projects');
  expect(again.url().endsWith('/console/login'), 'sign-out ended the SSO session');
  await ctx.close();
}

await refused('state', { forgeState: true }, 'wrong state');
await refused('audience', { tamper: 'audience' }, 'wrong audience');
await refused('expired', { tamper: 'expired' }, 'expired');
await refused('nonce', { tamper: 'nonce' }, 'wrong nonce');
await refused('signature', { tamper: 'signature' }, 'bad signature');
await done();
