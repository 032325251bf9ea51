// A real OpenID Provider (panva/oidc-provider, OpenID Certified) for airlock's OIDC login tests.
//
//   PORT=…  node provider.mjs
//
// Prints `listening <issuer> kid=<signing key id>` once it serves. Users log in through the
// provider's own development login form (any user name; the password is not checked); their
// groups come from USERS below. Each start generates a fresh RSA signing key, so restarting the
// provider on the same port is a key rotation.
//
// Test-only control, to make the provider misbehave the way the tests need to prove airlock
// refuses it: `GET /test/mode?set=<mode>` rewrites the ID token of every following token
// response (signed with the provider's real key unless said otherwise):
//   none      untouched
//   aud       audience changed to another client
//   expired   exp and iat an hour in the past
//   forged    signed with a key that is not in the JWKS (same kid)
//   nonce     a different nonce

import * as crypto from 'node:crypto';
import Provider from 'oidc-provider';

const port = Number(process.env.PORT || 0);
const issuer = `http://127.0.0.1:${port}`;
const clientSecret = process.env.CLIENT_SECRET || 'test-client-secret-0123456789';

const USERS = {
  alice: { email: 'alice@example.test', groups: ['idp-dba', 'staff'] },
  bob: { email: 'bob@example.test', groups: ['staff'] },
};

const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
const kid = `k-${crypto.randomBytes(6).toString('hex')}`;
const signingJwk = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };

let mode = 'none';

const provider = new Provider(issuer, {
  clients: [
    {
      client_id: 'airlock',
      client_secret: clientSecret,
      // Native client: any port on a loopback redirect URI is accepted (RFC 8252 §7.3).
      application_type: 'native',
      // The CLI's loopback listener, and the gateway's web console (both on 127.0.0.1 in tests).
      redirect_uris: ['http://127.0.0.1/callback', 'http://127.0.0.1/console/callback'],
      grant_types: ['authorization_code', 'urn:ietf:params:oauth:grant-type:device_code'],
      response_types: ['code'],
      token_endpoint_auth_method: 'client_secret_basic',
    },
  ],
  jwks: { keys: [signingJwk] },
  features: {
    devInteractions: { enabled: true },
    deviceFlow: { enabled: true },
  },
  scopes: ['openid', 'email', 'groups', 'offline_access'],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], groups: ['groups'] },
  // Release the scope's claims in the ID token of the code flow too (airlock reads only the ID token).
  conformIdTokenClaims: false,
  cookies: { keys: ['test-cookie-key-0123456789'] },
  ttl: { IdToken: 600, AccessToken: 600, DeviceCode: 600, Interaction: 600, Session: 600, Grant: 600 },
  async findAccount(ctx, id) {
    const user = USERS[id] || { email: `${id}@example.test`, groups: [] };
    return {
      accountId: id,
      async claims() {
        return { sub: id, email: user.email, email_verified: true, groups: user.groups };
      },
    };
  },
});

function b64url(input) {
  return Buffer.from(input).toString('base64url');
}

function tamper(idToken) {
  const [h, p] = idToken.split('.');
  const header = JSON.parse(Buffer.from(h, 'base64url').toString());
  const payload = JSON.parse(Buffer.from(p, 'base64url').toString());
  let key = privateKey;
  const now = Math.floor(Date.now() / 1000);
  switch (mode) {
    case 'aud': payload.aud = 'some-other-client'; break;
    case 'expired': payload.iat = now - 3600; payload.exp = now - 1800; break;
    case 'nonce': payload.nonce = 'not-the-nonce-airlock-sent'; break;
    case 'forged': key = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey; break;
    default: return idToken;
  }
  const input = `${b64url(JSON.stringify(header))}.${b64url(JSON.stringify(payload))}`;
  const sig = crypto.sign('sha256', Buffer.from(input), key).toString('base64url');
  return `${input}.${sig}`;
}

provider.use(async (ctx, next) => {
  if (ctx.path === '/test/mode') {
    mode = ctx.query.set || 'none';
    ctx.body = `mode=${mode}\n`;
    return;
  }
  await next();
  if (ctx.path === '/token' && ctx.body && typeof ctx.body === 'object' && ctx.body.id_token) {
    ctx.body = { ...ctx.body, id_token: tamper(ctx.body.id_token) };
  }
});

const server = provider.listen(port, '127.0.0.1', () => {
  console.log(`listening ${issuer} kid=${kid}`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
