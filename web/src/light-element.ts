import { LitElement } from 'lit';

/**
 * An element that renders into the tree it sits in instead of a shadow root of its own. The
 * dashboard's overview, KPI detail and incidents pages (and their incident lists) are such
 * elements: they sit in <parity-app>'s shadow root, so their ids, labels (`for`, `aria-labelledby`)
 * and data attributes stay in one tree with the shell's, where the browser tests, the benchmark and
 * axe read them. Its static `styles` are added to that tree's style sheets once (a light element
 * gets no `:host`: style the tag name instead).
 */
export class LightElement extends LitElement {
  protected override createRenderRoot(): HTMLElement {
    const root = this.getRootNode();
    if (root instanceof ShadowRoot || root instanceof Document) {
      const own = (this.constructor as typeof LitElement).elementStyles
        .map((s) => (s instanceof CSSStyleSheet ? s : s.styleSheet))
        .filter((s): s is CSSStyleSheet => s !== undefined && !root.adoptedStyleSheets.includes(s));
      if (own.length) root.adoptedStyleSheets = [...root.adoptedStyleSheets, ...own];
    }
    return this;
  }
}
