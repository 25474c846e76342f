import { createServer, type Server } from 'node:http';
import Provider from 'oidc-provider';

/** A person the test identity provider knows: the login typed on its form is their account id. */
export interface IdpAccount {
  email: string;
  email_verified?: boolean;
  groups?: string[];
}

/**
 * A partner's identity provider for the tests: the `oidc-provider` package (a certified OpenID
 * provider) on a local port, with one confidential client — the room — and its development
 * login form (any login name; the account is looked up in `accounts`). E-mail and groups come
 * from the user info endpoint, as many providers give them.
 */
export class TestIdp {
  readonly #server: Server;
  readonly issuer: string;

  private constructor(server: Server, issuer: string) {
    this.#server = server;
    this.issuer = issuer;
  }

  static async start(opts: {
    port: number;
    redirectUris: string[];
    clientId: string;
    clientSecret: string;
    accounts: Record<string, IdpAccount>;
  }): Promise<TestIdp> {
    const issuer = `http://127.0.0.1:${opts.port}`;
    const provider = new Provider(issuer, {
      clients: [
        {
          client_id: opts.clientId,
          client_secret: opts.clientSecret,
          redirect_uris: opts.redirectUris,
          grant_types: ['authorization_code'],
          response_types: ['code'],
          token_endpoint_auth_method: 'client_secret_post',
        },
      ],
      claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'], groups: ['groups'] },
      cookies: { keys: ['parity-test-idp-cookie-key'] },
      pkce: { required: () => true },
      features: { devInteractions: { enabled: true } },
      // The room is the company's own application: consent is given (its documented first-party
      // pattern), so a sign-in is the login form only.
      loadExistingGrant: async (ctx) => {
        const oidc = ctx.oidc;
        const grantId = oidc.result?.consent?.grantId ?? oidc.session!.grantIdFor(oidc.client!.clientId);
        if (grantId) return oidc.provider.Grant.find(grantId);
        const grant = new oidc.provider.Grant({ clientId: oidc.client!.clientId, accountId: oidc.session!.accountId! });
        grant.addOIDCScope('openid email profile groups');
        await grant.save();
        return grant;
      },
      findAccount: async (_ctx, id) => {
        const a = opts.accounts[id];
        if (!a) return undefined;
        return {
          accountId: id,
          claims: async () => ({
            sub: id,
            email: a.email,
            email_verified: a.email_verified ?? true,
            ...(a.groups ? { groups: a.groups } : {}),
          }),
        };
      },
    });
    // A provider's own failure is the test's failure: say it.
    provider.on('server_error', (_ctx: unknown, err: Error) => console.error('test identity provider:', err));
    const server = createServer(provider.callback());
    await new Promise<void>((r) => server.listen(opts.port, '127.0.0.1', r));
    return new TestIdp(server, issuer);
  }

  async close(): Promise<void> {
    this.#server.closeAllConnections();
    await new Promise<void>((r) => this.#server.close(() => r()));
  }
}
