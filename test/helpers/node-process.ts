/**
 * Runs `rtcdp dev` as a child process for tests, on a free loopback port, and stops it
 * by PID: gracefully with SIGTERM or abruptly with SIGKILL.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const RTCDP_BIN = path.join(ROOT, 'bin', 'rtcdp.js');
export const SAMPLE_FILE = path.join(ROOT, 'data', 'online-retail-2010-12.csv');

export interface CliRun {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the rtcdp CLI and resolves with its exit code and output; a non-zero exit does not reject. */
export function runCli(args: string[]): Promise<CliRun> {
  return new Promise((resolve) => {
    execFile(process.execPath, [RTCDP_BIN, ...args], { timeout: 60_000 }, (error, stdout, stderr) => {
      let code = 0;
      if (error !== null) code = typeof error.code === 'number' ? error.code : -1;
      resolve({ code, stdout, stderr });
    });
  });
}

export interface NodeProcess {
  address: string;
  child: ChildProcess;
  /** Everything the process wrote to stderr so far. */
  stderr(): string;
  /** Sends `signal` and resolves with the exit code (or the signal name) once the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

export async function startNodeProcess(dataDir: string, extraArgs: string[] = []): Promise<NodeProcess> {
  const child = spawn(process.execPath, [RTCDP_BIN, 'dev', '--data', dataDir, '--port', '0', '--log-level', 'warn', ...extraArgs], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (chunk) => (stderr += chunk));
  const exited = new Promise<number | string>((resolve) => child.on('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));

  const address = await new Promise<string>((resolve, reject) => {
    let stdout = '';
    const timer = setTimeout(() => reject(new Error(`rtcdp dev did not print its address within 30 s; stderr: ${stderr}`)), 30_000);
    child.stdout!.on('data', (chunk) => {
      stdout += chunk;
      const match = /rtcdp listening on (\S+)/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve(match[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`rtcdp dev exited with ${code} before listening; stderr: ${stderr}`));
    });
  });

  return {
    address,
    child,
    stderr: () => stderr,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}
