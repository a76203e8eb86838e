//! Packaging commands, the xtask convention: `cargo xtask dist --out DIR [--profile P]`.
//!
//! `dist` builds the server binary and writes into DIR every artifact this machine can
//! make: the npm main package (the launcher), the npm package of this platform (the
//! binary), the MCP Bundle (`.mcpb`, for Claude Desktop), a `server.json` for the MCP
//! Registry naming the bundle's checksum, and `SHA256SUMS`. The packages for other
//! platforms come from a release pipeline running the same command on each of them.
//! Versions always come from Cargo.toml, whatever the copies in npm/ and the manifests say.

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use sha2::{Digest, Sha256};

/// The mcpb CLI, pinned: `pack` validates the manifest with this version's schema.
const MCPB: &str = "@anthropic-ai/mcpb@2.1.2";
const BIN: &str = "bitrix24-task-results-mcp";

type Result<T> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let outcome = match args.first().map(String::as_str) {
        Some("dist") => parse_dist(&args[1..]).and_then(|(out, profile)| dist(&out, &profile)),
        _ => Err("usage: cargo xtask dist --out DIR [--profile dist|release|dev]".into()),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn parse_dist(args: &[String]) -> Result<(PathBuf, String)> {
    let (mut out, mut profile) = (None, "dist".to_string());
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or(format!("{a} takes a value"));
        match a.as_str() {
            "--out" => out = Some(PathBuf::from(value()?)),
            "--profile" => profile = value()?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok((out.ok_or("--out DIR is required")?, profile))
}

/// The repository root (xtask/ lives right under it).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask/ has a parent")
        .to_path_buf()
}

fn dist(out: &Path, profile: &str) -> Result<()> {
    let root = root();
    let version = cargo_version(&root)?;
    let (os, cpu) = npm_platform()?;
    let exe = format!("{BIN}{}", std::env::consts::EXE_SUFFIX);
    fs::create_dir_all(out).map_err(|e| format!("create {}: {e}", out.display()))?;
    let out = out
        .canonicalize()
        .map_err(|e| format!("{}: {e}", out.display()))?;

    let binary = build(&root, profile, &exe)?;
    let stage = out.join(".stage");
    let _ = fs::remove_dir_all(&stage);

    // npm: the launcher package and this platform's binary package.
    let main_pkg = stage.join("npm-main");
    copy_dir(&root.join("npm").join(BIN), &main_pkg)?;
    set_version(&main_pkg.join("package.json"), &version)?;
    let platform = format!("{os}-{cpu}");
    let plat_pkg = stage.join(format!("npm-{platform}"));
    copy_dir(&root.join("npm/platforms").join(&platform), &plat_pkg)?;
    set_version(&plat_pkg.join("package.json"), &version)?;
    copy_exe(&binary, &plat_pkg.join("bin").join(&exe))?;
    let mut artifacts = vec![npm_pack(&main_pkg, &out)?, npm_pack(&plat_pkg, &out)?];

    // The bundle: manifest.json, this platform's binary under server/.
    let bundle = stage.join("mcpb");
    fs::create_dir_all(bundle.join("server")).map_err(io("create the bundle dir"))?;
    let manifest = fs::read_to_string(root.join("manifest.json")).map_err(io("manifest.json"))?;
    let manifest = only_platform(&manifest, os)?;
    fs::write(bundle.join("manifest.json"), manifest).map_err(io("stage manifest.json"))?;
    set_version(&bundle.join("manifest.json"), &version)?;
    copy_exe(&binary, &bundle.join("server").join(&exe))?;
    let mcpb_name = format!("{BIN}-{version}-{platform}.mcpb");
    run(Command::new(npx())
        .args(["-y", MCPB, "pack"])
        .arg(&bundle)
        .arg(out.join(&mcpb_name)))?;
    artifacts.push(mcpb_name.clone());

    // server.json for the registry, naming this bundle with its checksum.
    let sha = sha256(&out.join(&mcpb_name))?;
    let server = fs::read_to_string(root.join("server.json")).map_err(io("server.json"))?;
    fs::write(
        out.join("server.json"),
        with_bundle(&server, &mcpb_name, &sha)?,
    )
    .map_err(io("write server.json"))?;
    set_version(&out.join("server.json"), &version)?;
    artifacts.push("server.json".into());

    let mut sums = String::new();
    for name in &artifacts {
        sums += &format!("{}  {name}\n", sha256(&out.join(name))?);
    }
    fs::write(out.join("SHA256SUMS"), sums).map_err(io("write SHA256SUMS"))?;
    fs::remove_dir_all(&stage).map_err(io("remove the staging dir"))?;
    for name in artifacts.iter().chain(["SHA256SUMS".to_string()].iter()) {
        println!("{}", out.join(name).display());
    }
    Ok(())
}

/// `version = "…"` of [package] in Cargo.toml (the first one: [package] comes first).
fn cargo_version(root: &Path) -> Result<String> {
    let toml = fs::read_to_string(root.join("Cargo.toml")).map_err(io("Cargo.toml"))?;
    toml.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .map(String::from)
        .ok_or_else(|| "no version in Cargo.toml".into())
}

/// npm's names for this machine (`process.platform`, `process.arch`).
fn npm_platform() -> Result<(&'static str, &'static str)> {
    let os = match std::env::consts::OS {
        "linux" => "linux",
        "macos" => "darwin",
        "windows" => "win32",
        other => return Err(format!("no npm package for the OS {other}")),
    };
    let cpu = match std::env::consts::ARCH {
        "x86_64" => "x64",
        "aarch64" => "arm64",
        other => return Err(format!("no npm package for the CPU {other}")),
    };
    Ok((os, cpu))
}

/// Builds the server with `profile`; returns the binary's path.
fn build(root: &Path, profile: &str, exe: &str) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    // `cargo xtask` runs this process with cargo's per-package variables set; passed on,
    // they reach build scripts (ring's rerun-if-env-changed) and force a rebuild.
    for (k, _) in std::env::vars_os() {
        if let Some(k) = k.to_str()
            && cargo_set(k)
        {
            cmd.env_remove(k);
        }
    }
    cmd.current_dir(root)
        .args(["build", "--locked", "--profile", profile, "--bin", BIN]);
    run(&mut cmd)?;
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let dir = if profile == "dev" || profile == "test" {
        "debug"
    } else if profile == "bench" {
        "release"
    } else {
        profile
    };
    let binary = target.join(dir).join(exe);
    if binary.exists() {
        Ok(binary)
    } else {
        Err(format!("{} was not built", binary.display()))
    }
}

/// Whether cargo set `k` for the process it runs, as opposed to the user's own settings
/// (CARGO_TARGET_DIR, CARGO_HOME, ...), which the inner build keeps.
fn cargo_set(k: &str) -> bool {
    [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CRATE_",
        "CARGO_PRIMARY_",
    ]
    .iter()
    .any(|p| k.starts_with(p))
        || matches!(
            k,
            "OUT_DIR" | "CARGO_TARGET_TMPDIR" | "CARGO_RUSTC_CURRENT_DIR"
        )
}

fn npx() -> &'static str {
    if cfg!(windows) { "npx.cmd" } else { "npx" }
}

/// `npm pack` of `dir` into `out`; returns the tarball's file name.
fn npm_pack(dir: &Path, out: &Path) -> Result<String> {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let output = Command::new(npm)
        .current_dir(dir)
        .args(["pack", "--silent", "--pack-destination"])
        .arg(out)
        .output()
        .map_err(|e| format!("run npm: {e} (is Node.js installed?)"))?;
    if !output.status.success() {
        return Err(format!(
            "npm pack in {} failed: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.ends_with(".tgz"))
        .map(String::from)
        .ok_or_else(|| format!("npm pack in {} named no .tgz", dir.display()))
}

/// Runs a tool with its stdout sent to stderr: this command's stdout lists the artifacts.
fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd
        .stdout(std::io::stderr())
        .status()
        .map_err(|e| format!("run {:?}: {e}", cmd.get_program()))?;
    if status.success() {
        Ok(())
    } else {
        let args: Vec<&OsStr> = cmd.get_args().collect();
        Err(format!(
            "{:?} {args:?} failed ({status})",
            cmd.get_program()
        ))
    }
}

/// Rewrites every `"version": "…"` of a JSON file, and the versions of the platform
/// packages in optionalDependencies, to `version`. Textual, so the file keeps its layout.
fn set_version(path: &Path, version: &str) -> Result<()> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let key_end = line
            .find("\"version\": \"")
            .map(|i| i + "\"version\": \"".len())
            .or_else(|| {
                line.find("\"@bitrix24-task-results-mcp/")
                    .and_then(|i| line[i..].find("\": \"").map(|j| i + j + 4))
            });
        match key_end.and_then(|s| line[s..].find('"').map(|e| (s, s + e))) {
            Some((s, e)) => {
                out.push_str(&line[..s]);
                out.push_str(version);
                out.push_str(&line[e..]);
            }
            None => out.push_str(line),
        }
    }
    fs::write(path, out).map_err(|e| format!("{}: {e}", path.display()))
}

/// The manifest with `compatibility.platforms` narrowed to the one this bundle carries.
fn only_platform(manifest: &str, os: &str) -> Result<String> {
    let key = "\"platforms\": [";
    let start = manifest.find(key).ok_or("manifest.json has no platforms")? + key.len();
    let end = start + manifest[start..].find(']').ok_or("platforms: no ]")?;
    Ok(format!(
        "{}\"{os}\"{}",
        &manifest[..start],
        &manifest[end..]
    ))
}

/// server.json with the mcpb package's file name and checksum of this build.
fn with_bundle(server: &str, file: &str, sha: &str) -> Result<String> {
    let mut out = String::new();
    for line in server.split_inclusive('\n') {
        if let Some(i) = line.find("\"identifier\": \"https://") {
            let value = i + "\"identifier\": \"".len();
            let end = value
                + line[value..]
                    .find('"')
                    .ok_or("server.json: bad identifier")?;
            let url = &line[value..end];
            let base = &url[..url.rfind('/').ok_or("server.json: bad bundle URL")? + 1];
            out += &format!("{}{base}{file}{}", &line[..value], &line[end..]);
        } else if let Some(i) = line.find("\"fileSha256\": \"") {
            let value = i + "\"fileSha256\": \"".len();
            let end = value
                + line[value..]
                    .find('"')
                    .ok_or("server.json: bad fileSha256")?;
            out += &format!("{}{sha}{}", &line[..value], &line[end..]);
        } else {
            out.push_str(line);
        }
    }
    Ok(out)
}

fn sha256(path: &Path) -> Result<String> {
    let mut file = fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf).map_err(io("read an artifact"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect())
}

fn copy_dir(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for entry in fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))? {
        let entry = entry.map_err(io("read a dir"))?;
        let dest = to.join(entry.file_name());
        if entry.file_type().map_err(io("stat"))?.is_dir() {
            copy_dir(&entry.path(), &dest)?;
        } else {
            fs::copy(entry.path(), &dest).map_err(|e| format!("{}: {e}", dest.display()))?;
        }
    }
    Ok(())
}

/// Puts the binary in a staging dir, executable for everyone (npm and mcpb keep the
/// mode): a hard link where it can be, since a dev binary is ~180 MB.
fn copy_exe(from: &Path, to: &Path) -> Result<()> {
    fs::create_dir_all(to.parent().expect("a file in a dir")).map_err(io("create a dir"))?;
    if fs::hard_link(from, to).is_err() {
        fs::copy(from, to).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(to, fs::Permissions::from_mode(0o755)).map_err(io("chmod"))?;
    }
    Ok(())
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> String {
    move |e| format!("{what}: {e}")
}
