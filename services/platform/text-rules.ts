/**
 * What text the room stores: the rules shared by the JSON routes' hygiene (input-hygiene.ts), a
 * point's subject (point-validator.ts) and a proposed agreement's text once its YAML escapes are
 * read (agreement-schema.ts asNewAgreement). No HTTP here: the parse workers load it too.
 */

/**
 * Half a surrogate pair: a high one without its low half, or a low one without its high half.
 * JSON's \u escapes can write one; it is no character, and UTF-8 turns every one into U+FFFD.
 */
export const UNPAIRED_SURROGATE = /[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/;

/**
 * NUL or half a surrogate pair (what PostgreSQL cannot store), or another C0 or C1 control
 * character or DEL but tab, line feed and carriage return (what a terminal or a page would act on).
 */
export const UNSTORABLE = new RegExp(
  `[\\u0000-\\u0008\\u000b\\u000c\\u000e-\\u001f\\u007f-\\u009f]|${UNPAIRED_SURROGATE.source}`,
);
