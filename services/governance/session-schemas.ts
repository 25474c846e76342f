import { z } from 'zod';
import { roles } from './token-repository.js';

/**
 * What the room's own routes (the dashboard's sign-in) answer, written once: the routes declare
 * these as their responses and the dashboard's types are inferred from them.
 */

/** Who a session (or bearer token) belongs to. */
export const whoSchema = z.object({
  name: z.string().describe("the token's name: a user's e-mail or a system's name"),
  role: z.enum(roles),
  partner: z.string().nullable().describe("the partner's id; null for the room's host and steering"),
  partnerName: z.string().nullable(),
});
export type Who = z.infer<typeof whoSchema>;

/** Signed out: no body. */
export const signedOutSchema = z.null().describe('no content');
