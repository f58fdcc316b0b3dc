import type { FastifyReply } from 'fastify';

/** Server-rendered pages of the authorize flow: sign-in, second factor, patient picker, consent, errors. */

export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);
}

const STYLE = `
body{font-family:system-ui,sans-serif;background:#f6f7f9;color:#1f2328;margin:0}
main{max-width:28rem;margin:3rem auto;background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:1.5rem 2rem}
h1{font-size:1.3rem;margin-top:0}label{display:block;margin:.8rem 0 .2rem}
input[type=text],input[type=password],input[type=search]{width:100%;box-sizing:border-box;padding:.45rem;font-size:1rem}
button{margin-top:1rem;padding:.5rem 1rem;font-size:1rem;margin-right:.5rem}
.error{color:#b00020;background:#fde7ea;padding:.5rem;border-radius:4px}
ul.scopes li{font-family:ui-monospace,monospace;margin:.2rem 0}
.muted{color:#57606a;font-size:.9rem}
`;

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body><main><h1>${escapeHtml(title)}</h1>${body}</main></body></html>`;
}

/** Pages cannot be framed (clickjacking on consent) nor run scripts. */
export function sendPage(reply: FastifyReply, status: number, title: string, body: string): FastifyReply {
  return reply
    .code(status)
    .type('text/html; charset=utf-8')
    .header('Cache-Control', 'no-store')
    .header('Content-Security-Policy', "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'")
    .header('X-Frame-Options', 'DENY')
    .header('Referrer-Policy', 'no-referrer')
    .send(page(title, body));
}

const hidden = (name: string, value: string) => `<input type="hidden" name="${escapeHtml(name)}" value="${escapeHtml(value)}">`;
const error = (message?: string) => (message ? `<p class="error" role="alert">${escapeHtml(message)}</p>` : '');

export function errorPage(reply: FastifyReply, status: number, message: string): FastifyReply {
  return sendPage(reply, status, 'Authorization failed', `${error(message)}<p class="muted">Return to the application and try again.</p>`);
}

export function signInPage(reply: FastifyReply, input: { requestId: string; clientName: string; message?: string; status?: number; username?: string }): FastifyReply {
  return sendPage(
    reply,
    input.status ?? 200,
    'Sign in',
    `<p><strong>${escapeHtml(input.clientName)}</strong> asks to reach your hospital records.</p>${error(input.message)}
<form method="post" action="/auth/authorize/signin">${hidden('request', input.requestId)}
<label for="username">User name</label><input type="text" id="username" name="username" autocomplete="username" required value="${escapeHtml(input.username ?? '')}">
<label for="password">Password</label><input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit" id="signin">Sign in</button></form>`,
  );
}

export function totpPage(reply: FastifyReply, input: { requestId: string; message?: string; status?: number }): FastifyReply {
  return sendPage(
    reply,
    input.status ?? 200,
    'Second factor',
    `<p>Enter the 6-digit code from your authenticator app.</p>${error(input.message)}
<form method="post" action="/auth/authorize/totp">${hidden('request', input.requestId)}
<label for="code">Code</label><input type="text" id="code" name="code" inputmode="numeric" pattern="[0-9]{6}" autocomplete="one-time-code" required>
<button type="submit" id="verify">Verify</button></form>`,
  );
}

export function patientPickerPage(
  reply: FastifyReply,
  input: { requestId: string; patients: Array<{ id: string; label: string }>; query?: string; message?: string },
): FastifyReply {
  const options = input.patients.length
    ? input.patients
        .map((p, i) => `<li><label><input type="radio" name="patient" value="${escapeHtml(p.id)}"${i === 0 ? ' required' : ''}> ${escapeHtml(p.label)} <span class="muted">(${escapeHtml(p.id)})</span></label></li>`)
        .join('')
    : '<li class="muted">No patient found.</li>';
  return sendPage(
    reply,
    200,
    'Choose a patient',
    `${error(input.message)}<form method="get" action="/auth/authorize/patient">${hidden('request', input.requestId)}
<label for="name">Search by name</label><input type="search" id="name" name="name" value="${escapeHtml(input.query ?? '')}"><button type="submit">Search</button></form>
<form method="post" action="/auth/authorize/patient">${hidden('request', input.requestId)}<ul id="patients">${options}</ul>
<button type="submit" id="choose">Continue</button></form>`,
  );
}

export function consentPage(reply: FastifyReply, input: { requestId: string; clientName: string; username: string; scopes: string[]; patient?: string }): FastifyReply {
  const scopes = input.scopes.map((s) => `<li>${escapeHtml(s)}</li>`).join('');
  return sendPage(
    reply,
    200,
    'Allow access?',
    `<p>Signed in as <strong>${escapeHtml(input.username)}</strong>.</p>
<p><strong>${escapeHtml(input.clientName)}</strong> will be allowed:</p><ul class="scopes" id="scopes">${scopes}</ul>
${input.patient ? `<p>Patient: <strong id="patient">${escapeHtml(input.patient)}</strong></p>` : ''}
<form method="post" action="/auth/authorize/consent">${hidden('request', input.requestId)}
<button type="submit" name="decision" value="approve" id="approve">Allow</button>
<button type="submit" name="decision" value="deny" id="deny">Deny</button></form>`,
  );
}
