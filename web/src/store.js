// What the page remembers in localStorage: the conversations of this browser,
// the chosen model, locale and credential, and per conversation where its
// event stream was left (cursor and the answer in flight) so a reload resumes.
const PREFIX = 'tokencast.';

function read(key, fallback) {
  try {
    const raw = localStorage.getItem(PREFIX + key);
    return raw == null ? fallback : JSON.parse(raw);
  } catch {
    return fallback;
  }
}

function write(key, value) {
  try {
    if (value == null) localStorage.removeItem(PREFIX + key);
    else localStorage.setItem(PREFIX + key, JSON.stringify(value));
  } catch {
    // Storage full or disabled: the page still works, it just forgets.
  }
}

export const store = {
  sessions: () => read('sessions', []),
  saveSessions: (list) => write('sessions', list.slice(0, 200)),
  credential: () => read('credential', ''),
  saveCredential: (v) => write('credential', v || null),
  model: () => read('model', ''),
  saveModel: (v) => write('model', v),
  locale: () => read('locale', ''),
  saveLocale: (v) => write('locale', v),
  resume: (sessionId) => read('resume.' + sessionId, null),
  saveResume: (sessionId, v) => write('resume.' + sessionId, v),
};

const ID_CHARS = 'abcdefghijklmnopqrstuvwxyz0123456789';

/** A random id valid as a session or request id (crypto.randomUUID needs a secure context). */
export function newId(prefix = '') {
  const bytes = new Uint8Array(20);
  crypto.getRandomValues(bytes);
  let out = prefix;
  for (const b of bytes) out += ID_CHARS[b % ID_CHARS.length];
  return out;
}

/** Session ids the server accepts: 1–128 of [A-Za-z0-9_-]. */
export function validSessionId(id) {
  return typeof id === 'string' && /^[A-Za-z0-9_-]{1,128}$/.test(id);
}
