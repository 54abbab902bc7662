import { describe, expect, it } from 'vitest';
import { isAllowedHost, parseHost } from '../../server/src/http/host-guard.js';

describe('host guard', () => {
  it('parses name[:port] and [v6][:port], lower case; anything else is no host', () => {
    expect(parseHost('LocalHost:5080')).toEqual({ name: 'localhost', port: 5080 });
    expect(parseHost('[::1]:5080')).toEqual({ name: '[::1]', port: 5080 });
    expect(parseHost('viewer.hospital.example')).toEqual({ name: 'viewer.hospital.example', port: undefined });
    expect(parseHost('ldfsam_server:5080')).toEqual({ name: 'ldfsam_server', port: 5080 });
    for (const bad of ['', ' ', 'a b', 'user@host', 'host/path', 'host:port', 'host:', '::1', '-x', 'x.', 'a:1:2', 'host:123456'])
      expect(parseHost(bad), bad).toBeUndefined();
  });

  it('loopback names on the local port, the bound address, and configured names (any port unless given)', () => {
    const policy = { allowedHosts: ['viewer.hospital.example', 'gw.example:8443'], boundHost: '10.0.0.5' };
    const ok = (name: string, port: number) => isAllowedHost({ name, port }, 5080, policy);
    for (const name of ['localhost', '127.0.0.1', '[::1]', '10.0.0.5']) {
      expect(ok(name, 5080), name).toBe(true);
      expect(ok(name, 5081), `${name}:5081`).toBe(false);
    }
    expect(ok('viewer.hospital.example', 443)).toBe(true);
    expect(ok('viewer.hospital.example', 80)).toBe(true);
    expect(ok('gw.example', 8443)).toBe(true);
    expect(ok('gw.example', 443)).toBe(false);
    for (const name of ['attacker.example', '127.0.0.2', '0.0.0.0', 'localhost.attacker.example', 'example'])
      expect(ok(name, 5080), name).toBe(false);
    // Bound to every address, none of them is a name of its own; an IPv6 bind is bracketed.
    expect(isAllowedHost({ name: '0.0.0.0', port: 5080 }, 5080, { allowedHosts: [], boundHost: '0.0.0.0' })).toBe(false);
    expect(isAllowedHost({ name: '[fd00::2]', port: 5080 }, 5080, { allowedHosts: [], boundHost: 'fd00::2' })).toBe(true);
  });
});
