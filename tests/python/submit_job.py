"""A Vauban client written from proto/ alone: generates Python stubs with grpcio-tools,
uploads a signed module, submits a job, follows it to the end and prints its output.

Usage: submit_job.py SCHEDULER_ADDR MODULE.wasm [GUEST ARGS...]
An https:// address is dialed with mutual TLS: the CA, the client certificate and its key are
the PEM files named by VAUBAN_CA, VAUBAN_CERT and VAUBAN_KEY (as for the vauban CLI).
Exits with the guest's exit code, or 125 if the job ended without one.
"""

import hashlib
import os
import pathlib
import sys
import tempfile

from grpc_tools import protoc

REPO = pathlib.Path(__file__).resolve().parents[2]


def generate_stubs(out: pathlib.Path) -> None:
    protos = sorted(str(p.relative_to(REPO / "proto")) for p in (REPO / "proto/vauban/v1").glob("*.proto"))
    args = ["protoc", f"-I{REPO / 'proto'}", f"--python_out={out}", f"--grpc_python_out={out}", *protos]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed")


def main() -> int:
    addr, module_path, guest_args = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3:]
    out = pathlib.Path(tempfile.mkdtemp(prefix="vauban-py-"))
    generate_stubs(out)
    sys.path.insert(0, str(out))
    import grpc
    from vauban.v1 import common_pb2, jobs_pb2, jobs_pb2_grpc, modules_pb2, modules_pb2_grpc

    if addr.startswith("https://"):
        read = lambda var: pathlib.Path(os.environ[var]).read_bytes()
        credentials = grpc.ssl_channel_credentials(
            root_certificates=read("VAUBAN_CA"),
            private_key=read("VAUBAN_KEY"),
            certificate_chain=read("VAUBAN_CERT"),
        )
        channel = grpc.secure_channel(addr.removeprefix("https://"), credentials)
    else:
        channel = grpc.insecure_channel(addr.removeprefix("http://"))
    grpc.channel_ready_future(channel).result(timeout=10)
    data = module_path.read_bytes()
    chunks = (modules_pb2.UploadModuleRequest(chunk=data[i : i + 65536], name=module_path.name if i == 0 else "")
              for i in range(0, len(data), 65536))
    info = modules_pb2_grpc.ModulesStub(channel).UploadModule(chunks)
    assert info.digest == "sha256:" + hashlib.sha256(data).hexdigest(), info.digest

    jobs = jobs_pb2_grpc.JobsStub(channel)
    spec = jobs_pb2.JobSpec(
        name="from-python",
        module_digest=info.digest,
        capabilities=common_pb2.Capabilities(args=guest_args, limits=common_pb2.Limits(timeout_ms=20000)),
    )
    job = jobs.SubmitJob(jobs_pb2.SubmitJobRequest(spec=spec))
    terminal = {jobs_pb2.JOB_STATE_COMPLETED, jobs_pb2.JOB_STATE_FAILED, jobs_pb2.JOB_STATE_CANCELLED}
    for event in jobs.WatchJob(jobs_pb2.WatchJobRequest(id=job.id)):
        if event.HasField("job") and event.job.state in terminal:
            job = event.job
            break
    sys.stdout.write(job.result.stdout.decode())
    print(f"job {job.id} on {job.node_id}: {jobs_pb2.JobState.Name(job.state)}", file=sys.stderr)
    if job.result.outcome.HasField("exited"):
        return job.result.outcome.exited
    return 125


if __name__ == "__main__":
    sys.exit(main())
