// Runs a WASI preview1 command on Node's built-in WASI (uvwasi), with wasmtime-style options,
// so the committed modules can be checked on this machine before weft has a WASI host:
//
//     node programs/tools/node-wasi-run.mjs [--dir HOST[::GUEST]]... [--env K=V]... FILE [ARGS...]
//
// argv[0] is FILE as given, as with `wasmtime run` and `weft run`. The exit status is the
// program's. A verification aid only: weft's tests do not use it.
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import process from 'node:process';

const argv = process.argv.slice(2);
const preopens = {};
const env = {};
while (argv.length > 0 && argv[0].startsWith('--')) {
  const option = argv.shift();
  const value = argv.shift();
  if (value === undefined) throw new Error(`${option} needs a value`);
  if (option === '--dir') {
    const [host, guest] = value.split('::');
    preopens[guest ?? host] = host;
  } else if (option === '--env') {
    const eq = value.indexOf('=');
    if (eq < 0) env[value] = process.env[value] ?? '';
    else env[value.slice(0, eq)] = value.slice(eq + 1);
  } else {
    throw new Error(`unknown option ${option}`);
  }
}
if (argv.length === 0) throw new Error('no module given');
const wasi = new WASI({ version: 'preview1', args: argv, env, preopens, returnOnExit: true });
const module = await WebAssembly.compile(await readFile(argv[0]));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
