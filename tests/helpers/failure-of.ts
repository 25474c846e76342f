/** What reading `body` to its end throws (undefined if nothing). */
export async function failureOf(body: AsyncIterable<unknown>): Promise<unknown> {
  try {
    for await (const _ of body) void _;
  } catch (e: unknown) {
    return e;
  }
  return undefined;
}
