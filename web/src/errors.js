// Every code the server (or the connection) can report, as a sentence a
// person can act on. The code itself is shown beside it for bug reports.
// A function gets the seconds the server asked us to wait (extensions.
// retryAfter), or 0 when it gave none.
const sentences = {
  UNAUTHENTICATED: 'The server refused the API key. Enter a valid key to continue.',
  FORBIDDEN: 'This key is not allowed to do that, or this conversation belongs to someone else.',
  BAD_USER_INPUT: 'The server could not understand the request.',
  EMPTY_MESSAGE: 'Type a message before sending.',
  MESSAGE_TOO_LARGE: 'That message is longer than the server accepts. Shorten it and try again.',
  INVALID_SESSION_ID: 'This conversation id is not valid. Start a new chat.',
  INVALID_LOCALE: 'The chosen locale is not a valid language tag.',
  INVALID_REQUEST_ID: 'The request id was not accepted. Try again.',
  INVALID_CURSOR: 'The resume position was not accepted, so the conversation was reloaded.',
  UNAVAILABLE: 'The server is busy or not ready. Try again in a moment.',
  INTERNAL: 'Something went wrong on the server.',
  PROVIDER_ERROR: 'The model failed while answering. Try Regenerate.',
  PROVIDER_TIMEOUT: 'The model took too long to answer. Try Regenerate.',
  PROVIDER_THROTTLED: 'The model\'s provider asked this server to slow down. Wait a moment, then try Regenerate.',
  PROVIDER_UNAVAILABLE: 'The model\'s provider is down or cannot be reached. Try Regenerate later.',
  PROVIDER_AUTH: 'The model\'s provider refused this server\'s credentials. The server\'s operator has to fix its configuration.',
  RATE_LIMITED: (wait) => (wait
    ? `You are asking faster than this server allows. Try again in ${wait} s.`
    : 'You are asking faster than this server allows. Wait a moment, then try again.'),
  BODY_TOO_LARGE: 'The request was larger than the server accepts. Shorten the message and try again.',
  QUERY_TOO_DEEP: 'The server refused a request from this page as too deeply nested. Reload the page; if it persists, the server\'s limits are set too low.',
  TOO_MANY_ALIASES: 'The server refused a request from this page for using too many aliases. Reload the page; if it persists, the server\'s limits are set too low.',
  COMPLEXITY_LIMIT_EXCEEDED: 'The server refused a request from this page as too complex. Reload the page; if it persists, the server\'s limits are set too low.',
  TOO_MANY_CONNECTIONS: 'This key already holds as many live connections as the server allows. Close other tabs, then reload the page.',
  TOO_MANY_SUBSCRIPTIONS: 'This connection is watching more conversations than the server allows. Close other tabs or reload the page.',
  INCOMPLETE: 'The answer stopped before it was finished.',
  UNKNOWN_MODEL: 'That model is not available on this server. Pick another one.',
  NOT_FOUND: 'That answer no longer exists on the server.',
  CANCELLED: 'You stopped this answer.',
  RESYNC: 'Some events were too old to replay, so the conversation was reloaded.',
  NETWORK: 'Cannot reach the server. Check that tokencast is running; the page keeps trying.',
  SLOW_CONSUMER: 'The connection fell behind the stream and is catching up.',
  SERVER_SHUTDOWN: 'The server is restarting; the page reconnects by itself.',
  STEP_LIMIT: 'The agent asked for more steps than this server allows in one answer.',
  RUN_TIMEOUT: 'The agent took longer than this server allows for one answer.',
  STORAGE_UNAVAILABLE: 'The server\'s storage is full, so the answer ended before it was kept whole.',
  ALREADY_ANSWERED: 'This tool call was already answered, in another tab or on another device.',
  APPROVAL_NOT_PENDING: 'This tool call no longer waits for an answer: it was answered, it timed out, or the answer ended.',
};

/**
 * Returns a clear sentence for an error code; retryAfter is the seconds the
 * server asked the client to wait, when it said.
 */
export function describe(code, fallback, retryAfter) {
  const wait = retryAfter > 0 ? Math.ceil(retryAfter) : 0;
  const sentence = sentences[code];
  if (typeof sentence === 'function') return sentence(wait);
  return sentence || fallback || `The server reported an error (${code}).`;
}

/** An error with a stable code, from the server or the connection. */
export class CodedError extends Error {
  constructor(code, message, retryAfter) {
    super(message || code);
    this.code = code;
    // Seconds the server asked us to wait before trying again (RATE_LIMITED).
    this.retryAfter = retryAfter || 0;
  }
}

/** Makes a CodedError from a GraphQL error, keeping its code and retryAfter. */
export function fromGraphQL(e) {
  const ext = (e && e.extensions) || {};
  return new CodedError(ext.code || 'INTERNAL', e && e.message, Number(ext.retryAfter) || 0);
}
