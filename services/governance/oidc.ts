import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type * as OpenId from 'openid-client';
import YAML from 'yaml';
import { z } from 'zod';
import type { Agreement } from '../platform/agreement-schema.js';
import { StartupError } from '../platform/room.js';
import type { Role } from './token-repository.js';
import { addressBlocks } from '../platform/addresses.js';

// Sign-in through each partner's own identity provider (OpenID Connect, authorization code with
// PKCE, through openid-client). The room's configuration names, per partner, its issuer, the
// room's client there, the e-mail domains its people have and how its groups map to roles. A
// partner's people come only from its own issuer: the flow is bound to the partner it started for,
// the token exchange goes to that issuer (openid-client checks the ID token's `iss`, audience and
// nonce), and the e-mail must be verified and of one of that partner's domains.

/** openid-client, loaded with the first sign-in through a provider: a room without one never loads it. */
let openIdModule: Promise<typeof OpenId> | undefined;
const openId = () =>
  (openIdModule ??= import('openid-client').catch((err: unknown) => {
    openIdModule = undefined; // tried again at the next sign-in, as a failed discovery is
    throw err;
  }));

const signInRoles = ['admin', 'steering', 'owner', 'analyst'] as const;
const domain = z
  .string()
  .regex(
    /^(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$/,
    'expected a domain such as acme.example',
  );

const providerSchema = z.strictObject({
  partner: z.string().min(1).max(63),
  /** The button's words ("Acme Entra ID"); default: the partner's name. */
  label: z.string().min(1).max(100).optional(),
  issuer: z.url({ protocol: /^https?$/ }),
  clientId: z.string().min(1).max(500),
  /** The client secret, or the environment variable that holds it (keep secrets out of files). */
  clientSecret: z.string().min(1).max(2000).optional(),
  clientSecretEnv: z
    .string()
    .regex(/^[A-Z_][A-Z0-9_]*$/, 'expected an environment variable name')
    .optional(),
  domains: z.array(domain).min(1).max(50),
  groupsClaim: z.string().min(1).max(100).default('groups'),
  /** The scopes asked for (a provider that puts groups behind a scope of its own needs it here). */
  scopes: z
    .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,100}$/, 'expected a scope token'))
    .max(20)
    .default(['openid', 'email', 'profile']),
  /** Group → role; the strongest of a person's mapped groups wins (admin, steering, owner, analyst). */
  roles: z.record(z.string().min(1).max(200), z.enum(signInRoles)).default({}),
  /** The role of a person in none of the mapped groups; absent: such a person is refused. */
  defaultRole: z.enum(['analyst', 'owner']).optional(),
});
export type OidcProvider = z.infer<typeof providerSchema> & { secret: string | undefined };

const fileSchema = z.strictObject({ providers: z.array(providerSchema).min(1).max(50) });

/**
 * The providers of PARITY_OIDC_FILE, checked against the agreement: each names a partner of it,
 * one provider per partner, no domain claimed by two partners, a secret present where named.
 */
export function loadOidcProviders(file: string, agreement: Agreement): Map<string, OidcProvider> {
  let raw: unknown;
  try {
    raw = YAML.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    throw new StartupError(`PARITY_OIDC_FILE ${file}: ${(e as Error).message}`);
  }
  const parsed = fileSchema.safeParse(raw);
  if (!parsed.success) {
    const i = parsed.error.issues[0]!;
    throw new StartupError(`PARITY_OIDC_FILE ${file}: ${i.path.join('.') || '(file)'}: ${i.message}`);
  }
  const out = new Map<string, OidcProvider>();
  const domains = new Map<string, string>();
  parsed.data.providers.forEach((p, i) => {
    const at = `PARITY_OIDC_FILE ${file}: providers.${i}`;
    if (!agreement.partners.some((x) => x.id === p.partner))
      throw new StartupError(`${at}.partner: ${p.partner} is not a partner of the agreement`);
    if (out.has(p.partner)) throw new StartupError(`${at}.partner: ${p.partner} has a provider already`);
    for (const d of p.domains) {
      const other = domains.get(d);
      if (other && other !== p.partner)
        throw new StartupError(`${at}.domains: ${d} is ${other}'s already: a domain belongs to one partner`);
      domains.set(d, p.partner);
    }
    const secret = p.clientSecretEnv ? process.env[p.clientSecretEnv] : p.clientSecret;
    if (p.clientSecretEnv && !secret)
      throw new StartupError(`${at}.clientSecretEnv: the environment has no ${p.clientSecretEnv}`);
    const issuer = new URL(p.issuer);
    if (issuer.protocol === 'http:' && !['localhost', '127.0.0.1', '[::1]'].includes(issuer.hostname))
      throw new StartupError(`${at}.issuer: an identity provider is reached over https (http only on localhost)`);
    out.set(p.partner, { ...p, secret });
  });
  return out;
}

/** Why a sign-in was refused: the dashboard says it in the person's language. */
export type SignInRefusal = 'flow' | 'provider' | 'email' | 'domain' | 'role';

export class SignInError extends Error {
  constructor(
    readonly reason: SignInRefusal,
    detail: string,
    /** The partner whose provider the sign-in went through, once known: its admins see the refusal. */
    readonly partner: string | null = null,
    /** The person, once the provider named them (a role refusal ends their earlier sign-in). */
    readonly email: string | null = null,
  ) {
    super(detail);
  }
}

interface Flow {
  partner: string;
  /** The address blocks the flow counts in (addressBlocks). */
  host: string;
  site: string;
  verifier: string;
  state: string;
  nonce: string;
  redirectUri: string;
  expires: number;
}

const FLOW_MS = 10 * 60_000;
const MAX_FLOWS = 10_000;
/** Sign-ins under way from one host (an IPv4 address, an IPv6 /64): a browser needs a few; more is someone filling the table. */
const MAX_FLOWS_PER_HOST = 20;
/** …and from one IPv6 site (a /48, 65,536 /64s): an office's people, not one holder's many hosts. */
const MAX_FLOWS_PER_SITE = 200;

/**
 * The relying party: discovery per provider (cached), flows started and not yet finished (in
 * memory for ten minutes, at most 10,000: a start costs the caller nothing, so the room bounds it).
 */
export class OidcSignIn {
  readonly #providers: Map<string, OidcProvider>;
  readonly #configs = new Map<string, Promise<OpenId.Configuration>>();
  readonly #flows = new Map<string, Flow>();

  constructor(providers: Map<string, OidcProvider>) {
    this.#providers = providers;
  }

  get providers(): OidcProvider[] {
    return [...this.#providers.values()];
  }

  provider(partner: string): OidcProvider | undefined {
    return this.#providers.get(partner);
  }

  #config(p: OidcProvider): Promise<OpenId.Configuration> {
    let c = this.#configs.get(p.partner);
    if (!c) {
      const insecure = new URL(p.issuer).protocol === 'http:';
      c = openId().then((client) =>
        client.discovery(
          new URL(p.issuer),
          p.clientId,
          p.secret,
          undefined,
          insecure ? { execute: [client.allowInsecureRequests] } : undefined,
        ),
      );
      // A failed discovery is tried again at the next sign-in, not cached.
      c.catch(() => this.#configs.delete(p.partner));
      this.#configs.set(p.partner, c);
    }
    return c;
  }

  /** Starts a sign-in: the flow's id (for a cookie) and where to send the person. */
  async start(partner: string, redirectUri: string, now: number, ip: string): Promise<{ flowId: string; url: URL }> {
    const p = this.#providers.get(partner)!;
    for (const [k, f] of this.#flows) if (f.expires <= now) this.#flows.delete(k);
    // One host cannot crowd out the others, nor one IPv6 site (whose holder picks from 2^80
    // addresses): its oldest flow gives way; and when the table is full the oldest of all does (a
    // browser that waited ten minutes starts again).
    const { host, site } = addressBlocks(ip);
    const fromHost = [...this.#flows].filter(([, f]) => f.host === host);
    if (fromHost.length >= MAX_FLOWS_PER_HOST) this.#flows.delete(fromHost[0]![0]);
    const fromSite = [...this.#flows].filter(([, f]) => f.site === site);
    if (fromSite.length >= MAX_FLOWS_PER_SITE) this.#flows.delete(fromSite[0]![0]);
    if (this.#flows.size >= MAX_FLOWS) this.#flows.delete(this.#flows.keys().next().value!);
    let config: OpenId.Configuration;
    try {
      config = await this.#config(p);
    } catch (e) {
      throw new SignInError('provider', `the identity provider of ${partner} did not answer: ${(e as Error).message}`);
    }
    const client = await openId(); // loaded by #config
    const verifier = client.randomPKCECodeVerifier();
    const flow: Flow = {
      partner,
      host,
      site,
      verifier,
      state: client.randomState(),
      nonce: client.randomNonce(),
      redirectUri,
      expires: now + FLOW_MS,
    };
    const flowId = randomBytes(24).toString('base64url');
    this.#flows.set(flowId, flow);
    const url = client.buildAuthorizationUrl(config, {
      redirect_uri: redirectUri,
      scope: [...new Set(['openid', ...p.scopes])].join(' '),
      code_challenge: await client.calculatePKCECodeChallenge(verifier),
      code_challenge_method: 'S256',
      state: flow.state,
      nonce: flow.nonce,
    });
    return { flowId, url };
  }

  /**
   * Finishes a sign-in at the callback: the flow of the cookie (once), the code exchanged at that
   * partner's issuer, and the person it names — their verified e-mail of a partner's domain and the
   * role their groups map to.
   */
  async finish(
    flowId: string | undefined,
    partner: string,
    currentUrl: URL,
    agreement: Agreement,
    now: number,
  ): Promise<{ partner: string; email: string; role: Role; issuer: string }> {
    const flow = flowId ? this.#flows.get(flowId) : undefined;
    if (flowId) this.#flows.delete(flowId);
    if (!flow || flow.expires <= now)
      throw new SignInError('flow', 'this sign-in was not started here, or took longer than ten minutes');
    // Each partner's provider returns to its own address: an answer at another partner's is refused.
    if (flow.partner !== partner)
      throw new SignInError(
        'provider',
        // Only a partner's id is quoted: the address is the caller's to write (the audit log keeps this).
        `a sign-in started for ${flow.partner} came back to ${this.#providers.has(partner) ? `${partner}'s` : 'an unknown'} address`,
        flow.partner,
      );
    const p = this.#providers.get(flow.partner)!;
    let claims: Record<string, unknown>;
    try {
      const config = await this.#config(p);
      const client = await openId();
      const tokens = await client.authorizationCodeGrant(config, currentUrl, {
        pkceCodeVerifier: flow.verifier,
        expectedState: flow.state,
        expectedNonce: flow.nonce,
        idTokenExpected: true,
      });
      claims = { ...(tokens.claims() ?? {}) };
      // Providers put e-mail and groups in the ID token or only in the user info: ask when missing.
      if (claims['email'] === undefined || claims[p.groupsClaim] === undefined) {
        const info = await client.fetchUserInfo(config, tokens.access_token, String(claims['sub']));
        claims = { ...info, ...claims };
      }
    } catch (e) {
      throw new SignInError(
        'provider',
        `the identity provider of ${p.partner} refused: ${(e as Error).message}`,
        p.partner,
      );
    }
    const given = typeof claims['email'] === 'string' ? claims['email'] : '';
    // The e-mail is the person's name in the room (owners, need-to-know, steering): verified, or no sign-in.
    if (!given.includes('@') || claims['email_verified'] !== true)
      throw new SignInError('email', 'the identity provider gave no verified e-mail address', p.partner);
    // Names are compared lower-cased: only plain ASCII with one @ lower-cases to itself alone
    // (the Kelvin sign K, U+212A, lower-cases to k: another person's name).
    if (!/^[!-?A-~]+@[!-?A-~]+$/.test(given))
      throw new SignInError(
        'email',
        'the identity provider gave an e-mail address of other than plain ASCII or with more than one @',
        p.partner,
      );
    const email = given.toLowerCase();
    const d = email.slice(email.lastIndexOf('@') + 1);
    if (!p.domains.includes(d)) throw new SignInError('domain', `${d} is not a domain of ${p.partner}`, p.partner);
    const raw = claims[p.groupsClaim];
    // Group names are strings; anything else a provider sends there names no group.
    const groups = Array.isArray(raw)
      ? raw.filter((g): g is string => typeof g === 'string')
      : typeof raw === 'string'
        ? [raw]
        : [];
    const mapped = new Set(groups.map((g) => p.roles[g]).filter((r): r is (typeof signInRoles)[number] => !!r));
    // Steering reads every KPI: a group makes a steering member only of a person the agreement names.
    if (!agreement.steering.some((s) => s.email.toLowerCase() === email)) mapped.delete('steering');
    const role = signInRoles.find((r) => mapped.has(r)) ?? p.defaultRole;
    if (!role)
      throw new SignInError('role', `${email} is in none of the groups ${p.partner} maps to a role`, p.partner, email);
    return { partner: p.partner, email, role, issuer: p.issuer };
  }
}
