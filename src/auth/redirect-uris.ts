/** Hosts a native or development app may receive its redirect on over plain http (RFC 8252 §7.3). */
const LOOPBACK_HOSTS = ['localhost', '127.0.0.1', '[::1]'];

/**
 * Why a redirect URI may not be registered, or undefined when it may: it must be an absolute
 * `https` URL, or `http` on a loopback host (native and development apps, any port); never a
 * fragment (RFC 6749 §3.1.2), nor credentials in the URL (`https://app@evil.example` reads as
 * one host and goes to another). Authorization requests then match the registered URIs exactly.
 */
export function redirectUriProblem(uri: string): string | undefined {
  let url: URL;
  try {
    url = new URL(uri);
  } catch {
    return `not an absolute URI: ${uri.slice(0, 200)}`;
  }
  if (uri.includes('#')) return 'redirect URIs cannot have a fragment';
  if (url.username || url.password) return 'redirect URIs cannot carry user credentials';
  if (url.protocol === 'https:') return url.hostname ? undefined : 'an https redirect URI needs a host';
  if (url.protocol === 'http:') {
    return LOOPBACK_HOSTS.includes(url.hostname) ? undefined : `http is allowed for loopback hosts only (${LOOPBACK_HOSTS.join(', ')}); use https for ${url.hostname.slice(0, 100)}`;
  }
  return `scheme ${url.protocol.slice(0, 40)} is not allowed: redirect URIs are https (or http on a loopback host)`;
}
