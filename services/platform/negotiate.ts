import Negotiator from 'negotiator';
import { Problem } from './errors.js';

/**
 * The media type among `types` a request's Accept prefers, by its q-values (RFC 9110 §12.5.1;
 * the negotiator package reads them): `q=0` refuses a type, a tie goes to the earlier of `types`
 * (no Accept, or `*\/*`: the first). An Accept that admits none of them is a 406 naming the
 * header, which says what is served and how `?format=` chooses instead.
 */
export function negotiate(accept: string | undefined, types: readonly string[], formats: string): string {
  const type = new Negotiator({ headers: { accept: accept ?? '*/*' } }).mediaType([...types]);
  if (type === undefined)
    throw new Problem(
      406,
      'Not Acceptable',
      `headers.accept: this is served as ${types.join(', ')} (or choose with ?format=${formats})`,
      { field: 'headers.accept' },
    );
  return type;
}
