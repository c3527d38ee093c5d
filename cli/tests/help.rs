//! Help that teaches, kept complete: every argument of every `huren` command has a
//! description, and every command (groups included) shows at least one example. The test
//! walks the whole clap command tree, so a command or option added later without help or
//! an example fails it.

use clap::CommandFactory as _;

/// Gaps in `cmd` and everything under it; `path` is how the command is typed.
fn gaps(cmd: &clap::Command, path: &str, out: &mut Vec<String>) {
    for arg in cmd.get_arguments() {
        let id = arg.get_id().as_str();
        if matches!(id, "help" | "version") {
            continue;
        }
        let described = arg.get_help().or(arg.get_long_help()).is_some_and(|h| !h.to_string().trim().is_empty());
        if !described {
            out.push(format!("`{path}`: argument `{id}` has no help"));
        }
    }
    let example = [cmd.get_after_help(), cmd.get_after_long_help()]
        .into_iter()
        .flatten()
        .any(|h| h.to_string().contains("huren "));
    if !example {
        out.push(format!("`{path}`: no example (after_help with a `huren …` line)"));
    }
    for sub in cmd.get_subcommands() {
        if sub.get_name() == "help" {
            continue;
        }
        gaps(sub, &format!("{path} {}", sub.get_name()), out);
    }
}

#[test]
fn every_command_describes_every_argument_and_shows_an_example() {
    let mut cmd = huren_cli::Cli::command();
    cmd.build();
    let mut out = Vec::new();
    gaps(&cmd, "huren", &mut out);
    assert!(out.is_empty(), "{} gaps in the help:\n{}", out.len(), out.join("\n"));
}

#[test]
fn the_top_level_help_documents_the_exit_codes_and_pki_help_the_first_day() {
    let top = huren_cli::Cli::command().render_long_help().to_string();
    for needle in ["Exit codes", "64", "  1 "] {
        assert!(top.contains(needle), "{top}");
    }
    let mut cmd = huren_cli::Cli::command();
    let pki = cmd.find_subcommand_mut("pki").expect("pki").render_long_help().to_string();
    for step in
        ["pki init", "province add", "rule add", "hub register", "issue coordinator", "trust-list sign", "bundle"]
    {
        assert!(pki.contains(step), "`huren pki --help` names the step {step:?}: {pki}");
    }
}
