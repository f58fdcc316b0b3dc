import { html } from 'htm/preact';
import { render } from 'preact';
import { App, SignIn } from './app.js';
import { completeSignIn, storedSession, type ConsoleConfig } from './oauth.js';

/** Start-up: the server's settings, then a sign-in return, a live session of this tab, or the sign-in page. */
async function start(): Promise<void> {
  const root = document.getElementById('app') as HTMLElement;
  const config = (await (await fetch('./config.json', { headers: { accept: 'application/json' } })).json()) as ConsoleConfig;
  // PKCE state and tokens are kept per origin: use the one the server is registered under.
  const home = new URL(config.consoleUrl);
  if (location.origin !== home.origin) {
    location.replace(config.consoleUrl);
    return;
  }
  root.textContent = '';
  const show = (error?: string) => {
    const session = error ? undefined : storedSession();
    if (session) render(html`<${App} config=${config} session=${session} onSignedOut=${() => show()} />`, root);
    else render(html`<${SignIn} config=${config} error=${error} />`, root);
  };
  try {
    await completeSignIn(config);
    show();
  } catch (e) {
    show(e instanceof Error ? e.message : String(e));
  }
}

void start();
