import { Link } from "react-router-dom";
import { useTitle } from "../lib/useTitle";

export function NotFound() {
  useTitle("Not found");
  return (
    <div className="page">
      <h1>Page not found</h1>
      <p>
        There is no page here. Go to the <Link to="/">start page</Link>.
      </p>
    </div>
  );
}
