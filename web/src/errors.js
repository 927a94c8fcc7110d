// Every code the server (or the connection) can report, as a sentence a
// person can act on. The code itself is shown beside it for bug reports.
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
  INCOMPLETE: 'The answer stopped before it was finished.',
  UNKNOWN_MODEL: 'That model is not available on this server. Pick another one.',
  NOT_FOUND: 'That answer no longer exists on the server.',
  CANCELLED: 'You stopped this answer.',
  RESYNC: 'Some events were too old to replay, so the conversation was reloaded.',
  NETWORK: 'Cannot reach the server. Check that tokencast is running; the page keeps trying.',
  SLOW_CONSUMER: 'The connection fell behind the stream and is catching up.',
  SERVER_SHUTDOWN: 'The server is restarting; the page reconnects by itself.',
};

/** Returns a clear sentence for an error code. */
export function describe(code, fallback) {
  return sentences[code] || fallback || `The server reported an error (${code}).`;
}

/** An error with a stable code, from the server or the connection. */
export class CodedError extends Error {
  constructor(code, message) {
    super(message || code);
    this.code = code;
  }
}
