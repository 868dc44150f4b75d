import { useState, type ReactNode } from "react";
import { Link, useLocation } from "react-router-dom";
import { describeError } from "../api/client";
import type { Session } from "../api/session";
import { can, type Action } from "../session/access";
import { useSession } from "../session/SessionContext";

interface NavItem {
  to: string;
  label: string;
  icon: ReactNode;
  /** Whether a path belongs to this item. */
  matches: (path: string) => boolean;
  /** Shown only to roles that may take this action. */
  needs?: Action;
}

const ICON_PROPS = {
  width: 22,
  height: 22,
  viewBox: "0 0 24 24",
  fill: "none",
  stroke: "currentColor",
  strokeWidth: 2,
  strokeLinecap: "round",
  strokeLinejoin: "round",
  "aria-hidden": true,
  focusable: false,
} as const;

const ITEMS: NavItem[] = [
  {
    to: "/",
    label: "Dashboard",
    matches: (p) => p === "/",
    icon: (
      <svg {...ICON_PROPS}>
        <rect x="3" y="3" width="7" height="9" />
        <rect x="14" y="3" width="7" height="5" />
        <rect x="14" y="12" width="7" height="9" />
        <rect x="3" y="16" width="7" height="5" />
      </svg>
    ),
  },
  {
    to: "/jobs",
    label: "Jobs",
    matches: (p) => p.startsWith("/jobs") && p !== "/jobs/new",
    icon: (
      <svg {...ICON_PROPS}>
        <line x1="8" y1="6" x2="21" y2="6" />
        <line x1="8" y1="12" x2="21" y2="12" />
        <line x1="8" y1="18" x2="21" y2="18" />
        <circle cx="4" cy="6" r="1" />
        <circle cx="4" cy="12" r="1" />
        <circle cx="4" cy="18" r="1" />
      </svg>
    ),
  },
  {
    to: "/jobs/new",
    label: "New Job",
    matches: (p) => p === "/jobs/new",
    needs: "submit-jobs",
    icon: (
      <svg {...ICON_PROPS}>
        <circle cx="12" cy="12" r="9" />
        <line x1="12" y1="8" x2="12" y2="16" />
        <line x1="8" y1="12" x2="16" y2="12" />
      </svg>
    ),
  },
  {
    to: "/providers",
    label: "Providers",
    matches: (p) => p.startsWith("/providers"),
    icon: (
      <svg {...ICON_PROPS}>
        <rect x="3" y="4" width="18" height="6" rx="1" />
        <rect x="3" y="14" width="18" height="6" rx="1" />
        <line x1="7" y1="7" x2="7.01" y2="7" />
        <line x1="7" y1="17" x2="7.01" y2="17" />
      </svg>
    ),
  },
  {
    to: "/metrics",
    label: "Metrics",
    matches: (p) => p.startsWith("/metrics"),
    icon: (
      <svg {...ICON_PROPS}>
        <polyline points="3 17 9 11 13 15 21 7" />
        <polyline points="15 7 21 7 21 13" />
      </svg>
    ),
  },
];

/** Who is logged in, with their role, and a way to log out (there is none in dev mode). */
function Account({ session }: { session: Session }) {
  const { logOut } = useSession();
  const [error, setError] = useState("");
  const onLogOut = async () => {
    setError("");
    try {
      await logOut();
    } catch (failure) {
      setError(describeError(failure));
    }
  };
  return (
    <div className="account" data-testid="account">
      <span className="account-who">
        <span className="account-name">{session.actor}</span> <span className="account-role">{session.role}</span>
      </span>
      <button type="button" className="button button-ghost" onClick={onLogOut}>
        Log out
      </button>
      {error && (
        <span role="alert" className="field-error">
          Could not log out: {error}
        </span>
      )}
    </div>
  );
}

/** The site navigation: a top bar on wide screens, a bottom tab bar on phones. */
export function NavBar() {
  const { pathname } = useLocation();
  const { state } = useSession();
  if (state.status !== "in") {
    return (
      <header className="topbar">
        <Brand />
      </header>
    );
  }
  const { session } = state;
  const items = ITEMS.filter((item) => !item.needs || can(session.role, item.needs));
  return (
    <header className="topbar">
      <Brand />
      <nav aria-label="Main" className="nav">
        <ul>
          {items.map((item) => {
            const active = item.matches(pathname);
            return (
              <li key={item.to}>
                <Link
                  to={item.to}
                  className={active ? "nav-link active" : "nav-link"}
                  aria-current={active ? "page" : undefined}
                >
                  {item.icon}
                  <span>{item.label}</span>
                </Link>
              </li>
            );
          })}
        </ul>
      </nav>
      {!session.dev_mode && <Account session={session} />}
    </header>
  );
}

function Brand() {
  // Not a link: its name would clash with the "Jobs" and "Dashboard" links.
  return (
    <span className="brand">
      <span className="brand-mark" aria-hidden="true">
        H
      </span>
      <span className="brand-name">Hodei Jobs</span>
    </span>
  );
}
