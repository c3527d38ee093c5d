#!/usr/bin/env python3
"""Rehearses docker-compose.yml without a container engine, then runs the README's steps.

For machines with no Docker (CI sandboxes, a provincial host before Docker is allowed):
every huren service of the compose file runs as the image would run it, from the compose
file itself (entrypoint, command, environment, volumes, depends_on conditions and
healthchecks), each in its own network namespace on one bridge, with its own mount
namespace (named volumes and bind mounts at their container paths, an /etc/hosts naming
the services and their aliases) and as the image's user 10001. With --image, the servers
run in the Dockerfile's image, made here: its base (debian:<suite>-slim) by debootstrap,
then its last stage's RUN, COPY, USER and WORKDIR; the build stage's `cargo build` is the
one run here. They run chrooted in it, with a read-only root and tmpfs where the compose
file says so. Without --image, on the host's filesystem. Redis is the machine's
redis-server, run with the official image's `--protected-mode no`. Not rehearsed: the
build stage inside rust:1-bookworm, and the services of other vendors' images — the
OpenTelemetry Collector, Prometheus, Grafana — (no binaries here: their names resolve and
nothing listens, which the servers must survive; they do). Their configuration is checked
by `.ci/run` instead (promtool check config / rules).

Then the README's "Use it", "Coordinator changes" and "Failure drills" run against it,
each step checked; any failure exits 1 with the step named. Needs root, iproute2,
util-linux (unshare, setpriv), redis-server/redis-cli, and `cargo build --release`.

    sudo python3 deploy/compose/rehearse.py [--image] [--huren target/release/huren] [--keep]
"""

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
NET = "10.89.0"
UID = 10001
RUN = f"{os.getpid() % 0x10000:04x}"  # keeps concurrent rehearsals apart
SWITCH = f"hr{RUN}-switch"


class Failed(Exception):
    pass


def sh(*args, check=True, **kw):
    return subprocess.run(args, check=check, text=True, capture_output=True, **kw)


class Rehearsal:
    def __init__(self, huren, keep):
        with open(os.path.join(HERE, "docker-compose.yml")) as f:
            self.services = yaml.safe_load(f)["services"]
        self.huren = os.path.abspath(huren)
        self.keep = keep
        self.work = tempfile.mkdtemp(prefix="huren-rehearsal-")
        self.procs = {}
        self.made = []  # mount points created on the host, removed at the end
        self.ips = {name: f"{NET}.{10 + i}" for i, name in enumerate(self.services)}
        self.rootfs, self.image = "", {}

    # -- namespaces ------------------------------------------------------------------
    @staticmethod
    def ns(name):
        return f"hr{RUN}-{name}"

    def network(self):
        sh("ip", "netns", "add", SWITCH)
        sh("ip", "-n", SWITCH, "link", "add", "br0", "type", "bridge")
        sh("ip", "-n", SWITCH, "link", "set", "br0", "up")
        hosts = ["127.0.0.1 localhost"]
        for i, (name, ip) in enumerate(self.ips.items()):
            ns = self.ns(name)
            sh("ip", "netns", "add", ns)
            sh("ip", "link", "add", f"h{RUN}v{i}", "type", "veth", "peer", "name", f"h{RUN}p{i}")
            sh("ip", "link", "set", f"h{RUN}v{i}", "netns", SWITCH)
            sh("ip", "link", "set", f"h{RUN}p{i}", "netns", ns)
            sh("ip", "-n", SWITCH, "link", "set", f"h{RUN}v{i}", "master", "br0", "up")
            sh("ip", "-n", ns, "link", "set", f"h{RUN}p{i}", "name", "eth0")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
            aliases = ((self.services[name].get("networks") or {}).get("default") or {}).get("aliases", [])
            hosts.append(" ".join([ip, name, *aliases]))
        self.hosts = os.path.join(self.work, "hosts")
        with open(self.hosts, "w") as f:
            f.write("\n".join(hosts) + "\n")

    def mounts(self, name):
        """(source, target, read_only) for the service's volumes, plus /etc/hosts and the binary."""
        out = [(self.hosts, "/etc/hosts", True), (self.huren, "/usr/local/bin/huren", True)]
        for v in self.services[name].get("volumes", []):
            parts = v.split(":")
            source, target, ro = parts[0], parts[1], len(parts) > 2 and parts[2] == "ro"
            if source.startswith("."):
                source = os.path.normpath(os.path.join(HERE, source))
            else:
                source = os.path.join(self.work, "volumes", source)
                if not os.path.exists(source):
                    os.makedirs(source)
                    os.chown(source, UID, UID)  # a named volume inherits the image's ownership
            out.append((source, target, ro))
        return out

    def mkdirs(self, path):
        """Creates `path` and any missing parents on the host, noting each for removal."""
        if not os.path.exists(path):
            self.mkdirs(os.path.dirname(path))
            os.mkdir(path)
            self.made.append(path)

    def command(self, name, entrypoint=None, command=None):
        spec = self.services[name]
        if name == "redis":
            return list(spec["command"]) + ["--protected-mode", "no"], True
        entry = entrypoint or spec.get("entrypoint") or ["huren"]
        return list(entry) + list(command if command is not None else spec.get("command", [])), False

    def spawn(self, name, entrypoint=None, command=None, wait=False):
        argv, as_root = self.command(name, entrypoint, command)
        spec = self.services[name]
        script = ["set -e"]
        # In an image, as a container: its root filesystem (read-only if the service says
        # so, with a tmpfs where asked), the volumes on top. On the host: the volumes at
        # their paths, in this mount namespace only.
        root = self.rootfs if (self.rootfs and not as_root) else ""
        if root:
            script.append(f"mount --bind {q(root)} {q(root)}")
            points = [(src, t) for src, t, _ in self.mounts(name)] + [(None, t) for t in spec.get("tmpfs", [])]
            for source, target in points:
                if not os.path.exists(root + target):  # the engine creates missing mount points
                    if source is None or os.path.isdir(source):
                        os.makedirs(root + target)
                    else:
                        os.makedirs(os.path.dirname(root + target), exist_ok=True)
                        open(root + target, "w").close()
            if spec.get("read_only"):
                script.append(f"mount -o remount,bind,ro {q(root)}")
            for target in spec.get("tmpfs", []):
                script.append(f"mount -t tmpfs tmpfs {q(root + target)}")
        for source, target, ro in self.mounts(name):
            if root and target == "/usr/local/bin/huren":
                continue  # the image carries its binary
            if not root and not os.path.exists(target):
                if os.path.isdir(source):
                    self.mkdirs(target)
                else:
                    self.mkdirs(os.path.dirname(target))
                    open(target, "w").close()
                    self.made.append(target)
            script.append(f"mount --bind {q(source)} {q(root + target)}")
            if ro:
                script.append(f"mount -o remount,bind,ro {q(root + target)}")
        workdir = spec.get("working_dir", self.image.get("workdir", "/var/lib/huren"))
        if not root:
            self.mkdirs(workdir)
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/var/lib/huren"}
        env.update({k: str(v) for k, v in (spec.get("environment") or {}).items()})
        if as_root:
            user = []
        elif root:
            user = ["chroot", f"--userspec={self.image.get('user', f'{UID}:{UID}')}", root]
        else:
            user = ["setpriv", f"--reuid={UID}", f"--regid={UID}", "--clear-groups"]
        script.append("exec " + " ".join(q(a) for a in [*user, "env", "-i", "-C", workdir,
                                                         *[f"{k}={v}" for k, v in env.items()], *argv]))
        full = ["ip", "netns", "exec", self.ns(name), "unshare", "--mount", "--propagation", "private",
                "sh", "-c", "\n".join(script)]
        if wait:
            return subprocess.run(full, text=True, capture_output=True)
        out = open(self.log(name), "a")
        return subprocess.Popen(full, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)

    # -- the image ---------------------------------------------------------------------
    def build_image(self, cache):
        """The Dockerfile's last stage as a root filesystem: its FROM (debian:<suite>-slim)
        by debootstrap --variant=minbase, then its RUN, COPY --from=build (the binary built
        here by the build stage's own command), USER and WORKDIR."""
        with open(os.path.join(REPO, "deploy", "docker", "Dockerfile")) as f:
            lines = f.read().replace("\\\n", " ").splitlines()
        stages = [i for i, l in enumerate(lines) if l.startswith("FROM ")]
        final = [l.strip() for l in lines[stages[-1]:] if l.strip() and not l.lstrip().startswith("#")]
        base = final[0].split()[1]
        suite = re.fullmatch(r"debian:(\w+)-slim", base)
        if not suite:
            raise Failed(f"the rehearsal knows how to make debian:<suite>-slim, not {base}")
        base_dir = os.path.join(cache, suite.group(1))
        if not os.path.exists(os.path.join(base_dir, "etc", "debian_version")):
            step(f"image: debootstrap {suite.group(1)} into {base_dir} (once; cached)")
            sh("debootstrap", "--variant=minbase", suite.group(1), base_dir, "http://deb.debian.org/debian")
        self.rootfs = os.path.join(self.work, "image")
        sh("cp", "-a", base_dir, self.rootfs)
        shutil.copy("/etc/resolv.conf", os.path.join(self.rootfs, "etc", "resolv.conf"))  # for apt-get in RUN
        for line in final[1:]:
            op, _, rest = line.partition(" ")
            if op == "RUN":
                run = subprocess.run(["chroot", self.rootfs, "sh", "-c", rest], text=True, capture_output=True)
                if run.returncode != 0:
                    raise Failed(f"image: RUN failed: {rest}\n{run.stdout}{run.stderr}")
            elif op == "COPY" and rest.startswith("--from=build "):
                source, target = rest.split()[1:3]
                if source != "/usr/local/bin/huren":
                    raise Failed(f"image: unknown COPY from the build stage: {source}")
                shutil.copy2(self.huren, self.rootfs + target)
            elif op == "USER":
                self.image["user"] = rest.strip()
            elif op == "WORKDIR":
                self.image["workdir"] = rest.strip()
            elif op in ("EXPOSE", "ENTRYPOINT", "CMD", "ENV", "LABEL"):
                pass
            else:
                raise Failed(f"image: the rehearsal does not know {op}")
        step(f"image: {base} + the Dockerfile's last stage, user {self.image.get('user')}")

    # -- compose semantics -------------------------------------------------------------
    def healthy(self, name, within=60):
        test = self.services[name]["healthcheck"]["test"]
        assert test[0] == "CMD", test
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if self.procs[name].poll() is not None:
                raise Failed(f"{name} exited with {self.procs[name].returncode} before it was healthy; see {self.log(name)}")
            inside = ["chroot", self.rootfs] if self.rootfs and name != "redis" else []
            if subprocess.run(["ip", "netns", "exec", self.ns(name), *inside, *test[1:]], capture_output=True).returncode == 0:
                return
            time.sleep(0.5)  # compose's healthcheck interval, shortened; a rehearsal, not a test
        raise Failed(f"{name} not healthy within {within} s; see {self.log(name)}")

    def log(self, name):
        return os.path.join(self.work, f"{name}.log")

    def up(self):
        done, order = set(), []

        def visit(name):
            if name in done:
                return
            for dep in self.services[name].get("depends_on", {}):
                visit(dep)
            done.add(name)
            order.append(name)

        for name, spec in self.services.items():
            if "tools" not in spec.get("profiles", []):
                visit(name)
        for name in order:
            if self.third_party(name):
                step(f"{name}: skipped ({self.services[name]['image']}: another vendor's image, no binary here; "
                     "the name resolves and nothing listens)")
                continue
            for dep, cond in self.services[name].get("depends_on", {}).items():
                if cond["condition"] == "service_completed_successfully":
                    try:
                        code = self.procs[dep].wait(120)
                    except subprocess.TimeoutExpired:
                        raise Failed(f"{dep} did not complete within 120 s; see {self.log(dep)}") from None
                    if code != 0:
                        raise Failed(f"{dep} exited with {code}; see {self.log(dep)}")
                if cond["condition"] == "service_healthy":
                    self.healthy(dep)
            self.procs[name] = self.spawn(name)
            step(f"{name}: started at {self.ips[name]}")
        for name in order:
            if "healthcheck" in self.services[name] and not self.third_party(name):
                self.healthy(name)
                step(f"{name}: healthy")

    def third_party(self, name):
        """A service from another vendor's image (the OpenTelemetry Collector, Prometheus,
        Grafana): not rehearsed. Huren's services build its image; Redis runs here."""
        return name != "redis" and "build" not in self.services[name]

    def stop(self, name, grace=None):
        """`docker compose stop`: SIGTERM, then SIGKILL after the stop grace period."""
        grace = grace or int(str(self.services[name].get("stop_grace_period", "10s")).rstrip("s"))
        proc = self.procs[name]
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            return proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            raise Failed(f"{name} did not stop within its {grace} s grace period")

    def start(self, name):
        self.procs[name] = self.spawn(name)

    def run(self, name, *args, entrypoint=None):
        """`docker compose run --rm [--entrypoint E] <name> args…`"""
        return self.spawn(name, entrypoint=entrypoint, command=list(args), wait=True)

    def http(self, service, port, path):
        """(status, body) of a GET from the cli service's network namespace."""
        got = subprocess.run(["ip", "netns", "exec", self.ns("cli"), "curl", "-sS", "--max-time", "5", "-w", "\n%{http_code}",
                              f"http://{service}:{port}{path}", "--resolve", f"{service}:{port}:{self.ips[service]}"],
                             text=True, capture_output=True)
        body, _, status = got.stdout.rpartition("\n")
        return int(status or 0), body

    def down(self):
        for name, proc in self.procs.items():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        for ns in [self.ns(n) for n in self.services] + [SWITCH]:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for target in reversed(self.made):
            if os.path.isdir(target):
                os.rmdir(target)
            else:
                os.remove(target)
        if not self.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def q(s):
    return "'" + str(s).replace("'", "'\\''") + "'"


def step(message):
    print(f"  ok  {message}", flush=True)


def expect(cond, message, detail=""):
    if not cond:
        raise Failed(f"{message}\n{detail}".strip())
    step(message)


def ok(result, what):
    if result.returncode != 0:
        raise Failed(f"{what}: exit {result.returncode}\n{result.stdout}{result.stderr}")
    return result.stdout


def tls(kind):
    return ["--cert", f"/pki/issued/{kind}/cert.pem", "--key", f"/pki/issued/{kind}/key.pem", "--ca", "/pki/root/ca.pem"]


def runbook(r):
    admin, hub, cdc = tls("admin-340000"), tls("hub-sd-jinan-highway-g3"), tls("authority-340000-hefei-cdc")
    node = ["--node", "node-340000:7443"]

    print("README: Use it")
    ok(r.run("cli", "admin", "status", *node, *admin, "ah-0001", "GREEN"), "admin status GREEN")
    out = ok(r.run("cli", "admin", "token", *node, *admin, "ah-0001", "--json"), "admin token")
    code = json.loads(out)["qr"]
    step("admin token issues the traveller's code")

    def lookup(gateway, purpose="transit.highway", credentials=hub):
        return r.run("cli", "hub", "lookup", "--gateway", gateway, *credentials, "--purpose", purpose, code)

    out = ok(lookup("gateway:8443"), "hub lookup via the gateway alias")
    expect("GREEN" in out, "a Shandong hub reads Anhui's GREEN through the gateway", out)
    for replica in ("gateway-1:8443", "gateway-2:8443"):
        expect("GREEN" in ok(lookup(replica), f"lookup via {replica}"), f"{replica} serves the lookup")
    out = ok(r.run("cli", "admin", "status", *node, *cdc, "ah-0002", "RED", "--rule", "NHC-CC-2022-9"), "RED by CDC")
    refused = r.run("cli", "admin", "status", *node, *admin, "ah-0003", "RED", "--rule", "NHC-CC-2022-9")
    expect(refused.returncode != 0 and refused.stderr.strip().count("\n") == 0,
           "the province admin may not set RED (exit != 0, one-line cause)", refused.stderr)

    status, body = r.http("gateway-1", 9090, "/readyz")
    expect(status == 200 and "redis up" in body, "gateway-1 /readyz: ready, Redis up", body)
    status, body = r.http("node-340000", 9091, "/readyz")
    expect(status == 200, "node 340000 /readyz: ready", body)
    _, metrics = r.http("gateway-1", 9090, "/metrics")
    for series in ("huren_gateway_lookups_total", "huren_gateway_redis_up", "huren_gateway_breaker_state"):
        expect(series in metrics, f"gateway /metrics exposes {series}")

    print("README: Coordinator changes")
    pki = ["huren"]
    ok(r.run("pki", "pki", "--dir", "/pki", "hub", "register", "gz-south-rail", "--purpose", "transit.rail",
             "--purpose", "transit.general", "--purpose", "transit.air", entrypoint=pki), "hub register")
    ok(r.run("pki", "pki", "--dir", "/pki", "trust-list", "sign", entrypoint=pki), "trust-list sign")
    out = ok(r.run("cli", "pki", "--dir", "/pki", "trust-list", "upload", "--gateway", "gateway-1:8443",
                   *tls("coordinator-national-ops")), "trust-list upload to gateway-1")
    rail = tls("hub-gz-south-rail")
    deadline = time.monotonic() + 30
    while True:  # the list reaches gateway-2 through Redis fan-out
        via2 = lookup("gateway-2:8443", purpose="transit.air", credentials=rail)
        if via2.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    expect(via2.returncode == 0 and "GREEN" in via2.stdout,
           "one upload to gateway-1 reached gateway-2 (the new purpose is served there)", via2.stdout + via2.stderr)

    print("README: Failure drills")
    r.stop("redis")
    expect("GREEN" in ok(lookup("gateway-1:8443"), "lookup with Redis stopped"), "Redis stopped: lookups still served")
    deadline = time.monotonic() + 30
    while "DEGRADED" not in r.http("gateway-1", 9090, "/readyz")[1] and time.monotonic() < deadline:
        time.sleep(0.5)
    status, body = r.http("gateway-1", 9090, "/readyz")
    expect("DEGRADED" in body, "Redis stopped: /readyz says DEGRADED", body)
    expect(re.search(r"^huren_gateway_redis_up(\{[^}]*\})? 0$", r.http("gateway-1", 9090, "/metrics")[1], re.M),
           "Redis stopped: huren_gateway_redis_up 0")
    r.start("redis")
    r.healthy("redis")
    deadline = time.monotonic() + 30
    while "redis up" not in r.http("gateway-1", 9090, "/readyz")[1] and time.monotonic() < deadline:
        time.sleep(0.5)
    expect("redis up" in r.http("gateway-1", 9090, "/readyz")[1], "Redis started: the gateway reconnected on its own")

    gd_node, gd_admin = ["--node", "node-440000:7443"], tls("admin-440000")
    ok(r.run("cli", "admin", "status", *gd_node, *gd_admin, "gd-0001", "GREEN"), "Guangdong status GREEN")
    gd_code = json.loads(ok(r.run("cli", "admin", "token", *gd_node, *gd_admin, "gd-0001", "--json"), "token"))["qr"]

    def gd_lookup():
        return r.run("cli", "hub", "lookup", "--gateway", "gateway:8443", *rail, "--purpose", "transit.rail", gd_code)

    expect(r.stop("node-440000") == 0, "node-440000 drained and exited 0 on SIGTERM")
    failed = gd_lookup()
    expect(failed.returncode != 0 and "440000" in failed.stderr, "node-440000 stopped: its lookups fail, naming it",
           failed.stderr)
    expect("GREEN" in ok(lookup("gateway:8443"), "Anhui lookup with Guangdong down"),
           "node-440000 stopped: Anhui lookups unaffected")
    r.start("node-440000")
    r.healthy("node-440000")
    step("node-440000 started again and healthy")
    deadline = time.monotonic() + 30  # until the breaker lets a trial call through
    while (back := gd_lookup()).returncode != 0 and time.monotonic() < deadline:
        time.sleep(0.5)
    expect(back.returncode == 0 and "GREEN" in back.stdout, "node-440000 back: its lookups are served again",
           back.stderr)

    print("Stop")
    for name in ("gateway-1", "gateway-2", "node-340000", "node-370000", "node-440000"):
        expect(r.stop(name) == 0, f"{name} exited 0 on SIGTERM within its grace period")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--huren", default=os.path.join(REPO, "target", "release", "huren"))
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, volumes)")
    parser.add_argument("--image", action="store_true",
                        help="run the servers in the Dockerfile's image (debootstrapped; read-only root, tmpfs)")
    parser.add_argument("--image-cache", default="/var/cache/huren-rehearsal",
                        help="where the debootstrapped base is kept between runs")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("rehearse.py: needs root (network and mount namespaces)")
    if not os.access(args.huren, os.X_OK):
        sys.exit(f"rehearse.py: no huren binary at {args.huren}; run cargo build --release first")
    r = Rehearsal(args.huren, args.keep)
    print(f"compose rehearsal in {r.work}")
    try:
        if args.image:
            r.build_image(args.image_cache)
        r.network()
        r.up()
        runbook(r)
        print("rehearsal passed")
    except (Failed, subprocess.CalledProcessError) as e:
        detail = e.stderr if isinstance(e, subprocess.CalledProcessError) else ""
        print(f"FAILED: {e}\n{detail}", file=sys.stderr)
        print(f"logs: {r.work}", file=sys.stderr)
        r.keep = True
        sys.exit(1)
    finally:
        r.down()


if __name__ == "__main__":
    main()
