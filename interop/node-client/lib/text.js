'use strict';
// Peer text on a terminal (issue: a server's ERROR message must not retitle the
// window, clear the screen or forge a log line). PROTOCOL.md §4.4 accepts any valid
// UTF-8 in an ERROR message; it is shown escaped, never interpreted.

// C0 and C1 controls, DEL, the line and paragraph separators, bidirectional
// overrides and isolates (which can reorder what is shown), and U+FEFF.
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ufeff\\"]/gu;

/** `text` in double quotes, with every character that could act on a terminal escaped. */
function escapePeerText(text) {
  const body = text.replace(UNSAFE, (c) => {
    if (c === '\\' || c === '"') return `\\${c}`;
    const code = c.codePointAt(0);
    if (code === 0x0a) return '\\n';
    if (code === 0x0d) return '\\r';
    if (code === 0x09) return '\\t';
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u${code.toString(16).padStart(4, '0')}`;
  });
  return `"${body}"`;
}

module.exports = { escapePeerText };
