"""``apx audit``: verify, prove, check a proof, export and checkpoint the audit log."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from orchestrator.cli.common import HomeOption, _app, _out
from orchestrator.cli.remote_mode import ServerOption, _remote
from orchestrator.errors import BadInput, NotFound

if TYPE_CHECKING:
    from audit.checkpoint import PublicKey
    from orchestrator.bootstrap import App


audit_app = typer.Typer(help="Verify, prove and export the tamper-evident audit log.", no_args_is_help=True)


KeyOption = Annotated[
    Path | None,
    typer.Option("--key", help="The audit public key (PEM); default: the home's keys/audit_ed25519.pub."),
]


def _public_key(application: App | None, key: Path | None) -> PublicKey:
    from audit.checkpoint import PublicKey
    from audit.log import AuditKeyMissing

    if key is not None:
        try:
            return PublicKey.from_pem(key.read_bytes())
        except (OSError, ValueError) as exc:
            raise BadInput(f"--key {key}: {exc}") from exc
    assert application is not None
    try:
        return application.audit.public_key()
    except AuditKeyMissing as exc:
        raise BadInput(f"{exc}; pass --key") from exc


@audit_app.command("verify")
def audit_verify(
    key: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    server: ServerOption = None,
    home: HomeOption = None,
) -> None:
    """Recompute the chain and the Merkle tree and check every signed checkpoint.

    Exit 0 when the log is intact, 1 at the first entry or checkpoint that is not.
    With --server the server verifies its log with its own key.
    """
    remote = _remote(server)
    if remote is not None:
        if key is not None:
            raise BadInput("--key is for verifying in-process; with --server the server uses its own key")
        with remote:
            result: dict[str, Any] = remote.get("/v1/audit/verify")
    else:
        application = _app(home)
        report = application.audit.verify(_public_key(application, key))
        finding = report.finding
        result = {
            "ok": report.ok,
            "entries": report.size,
            "root": report.root.hex(),
            "checkpoints": report.checkpoints,
            "signed_up_to": max((cp.size for cp in application.audit.store.checkpoints()), default=0),
            "problem": None
            if finding is None
            else {"kind": finding.kind, "seq": finding.seq, "message": finding.message},
            "notes": report.notes,
        }
    if as_json:
        _out(json.dumps(result))
    elif result["problem"] is None:
        size, covered = result["entries"], result["signed_up_to"]
        _out(f"OK: {size} entries, root {result['root']}, {result['checkpoints']} checkpoints verified")
        if covered < size:
            _out(f"  entries {covered + 1}-{size} are chained but not yet under a signed checkpoint")
        for note in result["notes"]:
            _out(f"  note: {note}")
    else:
        _out(f"TAMPERED: {result['problem']['message']}")
    raise typer.Exit(0 if result["ok"] else 1)


@audit_app.command("prove")
def audit_prove(
    seq: Annotated[int, typer.Argument(metavar="SEQ", help="The entry (counting from 1).")],
    home: HomeOption = None,
) -> None:
    """Print an inclusion proof of entry SEQ against the newest signed checkpoint (JSON)."""
    from audit.proof import dumps

    application = _app(home)
    try:
        proof = application.audit.prove(seq)
    except LookupError as exc:
        raise NotFound(str(exc)) from exc
    _out(dumps(proof))


@audit_app.command("check-proof")
def audit_check_proof(
    file: Annotated[str, typer.Argument(help="A proof from `apx audit prove`, or - for stdin.")],
    key: KeyOption = None,
    home: HomeOption = None,
) -> None:
    """Check an inclusion proof with only the public key. Exit 0 if it holds, 1 if not."""
    from audit.proof import InclusionProof, ProofError, check

    public = _public_key(None if key else _app(home), key)
    try:
        data = json.loads(sys.stdin.read() if file == "-" else Path(file).read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"{file}: not a readable JSON proof ({exc})") from exc
    try:
        proof = InclusionProof.from_json(data)
        entry = check(proof, public)
    except ProofError as exc:
        _out(f"INVALID: {exc}")
        raise typer.Exit(1) from None
    what = " ".join(str(entry[k]) for k in ("action", "intent_id", "subject") if entry.get(k))
    _out(
        f"OK: entry {proof.seq} ({what}, by {entry.get('actor')} at {entry.get('at')}) is in the log "
        f"of {proof.checkpoint.size} entries signed at {proof.checkpoint.at.isoformat()} "
        f"by key {proof.checkpoint.key_id}"
    )


@audit_app.command("export")
def audit_export(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write here instead of stdout.")
    ] = None,
    start: Annotated[int, typer.Option("--from", min=1, help="First entry to export.")] = 1,
    home: HomeOption = None,
) -> None:
    """Write the audit log as JSON lines for a SIEM: header with the public key, entries, checkpoint."""
    application = _app(home)
    if output is None:
        count = application.audit.export(sys.stdout, start=start)
    else:
        with output.open("w", encoding="utf-8") as out:
            count = application.audit.export(out, start=start)
        _out(f"wrote {count} entries to {output}")


@audit_app.command("checkpoint")
def audit_checkpoint(home: HomeOption = None) -> None:
    """Sign a checkpoint of the log now (normally made every N entries or T seconds)."""
    application = _app(home)
    made = application.audit.checkpoint(force=True)
    latest = application.audit.store.latest()
    if latest is None:
        _out("the audit log is empty: nothing to sign")
        return
    checkpoint = latest[0]
    verb = "signed" if made is not None else "already signed"
    _out(f"{verb}: {checkpoint.size} entries, root {checkpoint.root.hex()}, at {checkpoint.at.isoformat()}")
