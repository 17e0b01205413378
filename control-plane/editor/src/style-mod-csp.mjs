// CodeMirror's styles under the console's CSP (`style-src 'self'`, no 'unsafe-inline').
//
// style-mod (CodeMirror's CSS-in-JS) puts its rules in a <style> element when it mounts
// them in a Document, which that policy blocks, and in a constructed stylesheet
// (`adoptedStyleSheets`) when it mounts them in a ShadowRoot. The bundle imports this
// module instead of style-mod (esbuild `alias`, build.mjs): it mounts in the Document
// through a stand-in that has no `head`, so style-mod takes its constructed-stylesheet
// path there too. The rules are the same; they come from this same-origin script, not
// from the page, and no <style> element or style attribute is ever written.
import { StyleModule as Base } from '../node_modules/style-mod/src/style-mod.js';

const standIns = new WeakMap();

function standIn(root) {
  if (!root.head) return root; // a ShadowRoot: style-mod adopts a sheet there already
  let s = standIns.get(root);
  if (!s) {
    s = {
      ownerDocument: root,
      get adoptedStyleSheets() { return root.adoptedStyleSheets; },
      set adoptedStyleSheets(v) { root.adoptedStyleSheets = v; },
    };
    standIns.set(root, s);
  }
  return s;
}

export class StyleModule extends Base {
  static mount(root, modules, options) {
    Base.mount(standIn(root), modules, options);
  }
}
