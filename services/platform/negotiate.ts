import Negotiator from 'negotiator';
import { Problem } from './errors.js';

/**
 * The media type among `types` a request's Accept prefers, by its q-values (RFC 9110 §12.5.1;
 * the negotiator package reads them): `q=0` refuses a type, a tie goes to the earlier of `types`
 * (no Accept, or `*\/*`: the first). An Accept that admits none of them is a 406 naming the
 * header, which says what is served and how `?format=` chooses instead.
 */
export function negotiate(accept: string | undefined, types: readonly string[], formats: string): string {
  const type = new Negotiator({ headers: { accept: weightsOnly(accept) } }).mediaType([...types]);
  if (type === undefined)
    throw new Problem(
      406,
      'Not Acceptable',
      `headers.accept: this is served as ${types.join(', ')} (or choose with ?format=${formats})`,
      { field: 'headers.accept' },
    );
  return type;
}

/**
 * Accept with every media-type parameter but `q` dropped: negotiator matches parameters exactly,
 * so `application/json; charset=utf-8` or `text/csv;header=present` would admit nothing the room
 * names. An absent or empty Accept admits everything.
 */
function weightsOnly(accept: string | undefined): string {
  if (accept === undefined || accept.trim() === '') return '*/*';
  return accept
    .split(',')
    .map((range) => {
      const [type = '', ...params] = range.split(';');
      const q = params.find((p) => /^\s*q\s*=/i.test(p));
      return q === undefined ? type.trim() : `${type.trim()};${q.trim()}`;
    })
    .join(', ');
}
