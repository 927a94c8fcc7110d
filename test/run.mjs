// Builds tokencast, makes a throwaway TLS certificate for 127.0.0.1 and
// localhost, and runs every *.test.mjs with node's test runner. Each test
// file starts its own server (lib.mjs) on a free port with a temp data dir.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const work = mkdtempSync(join(tmpdir(), 'tokencast-clients-'));
try {
  const bin = join(work, 'tokencast');
  execFileSync('go', ['build', '-o', bin, './cmd/tokencast'], { cwd: join(here, '..'), stdio: 'inherit' });

  // The Go toolchain's own generate_cert writes cert.pem and key.pem into
  // the current directory; the key never leaves this temp dir.
  const certDir = join(work, 'tls');
  mkdirSync(certDir);
  const goroot = execFileSync('go', ['env', 'GOROOT']).toString().trim();
  execFileSync('go', ['run', join(goroot, 'src/crypto/tls/generate_cert.go'),
    '--host', '127.0.0.1,localhost', '--ca', '--duration', '2h'], { cwd: certDir, stdio: 'inherit' });

  const files = readdirSync(here).filter((f) => f.endsWith('.test.mjs')).sort();
  const args = ['--test', '--test-concurrency=2', '--test-force-exit', ...process.argv.slice(2), ...files.map((f) => join(here, f))];
  const res = spawnSync(process.execPath, args, {
    cwd: here,
    stdio: 'inherit',
    env: {
      ...process.env,
      TOKENCAST_BIN: bin,
      TOKENCAST_TLS_CERT_FILE: join(certDir, 'cert.pem'),
      TOKENCAST_TLS_KEY_FILE: join(certDir, 'key.pem'),
      // Node trusts the test certificate for https:// and wss://.
      NODE_EXTRA_CA_CERTS: join(certDir, 'cert.pem'),
    },
  });
  process.exitCode = res.status ?? 1;
} finally {
  rmSync(work, { recursive: true, force: true });
}
