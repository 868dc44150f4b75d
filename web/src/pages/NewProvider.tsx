import { useNavigate } from "react-router-dom";
import { createProvider } from "../api/endpoints";
import { NEW_PROVIDER } from "../forms/providerForm";
import { useTitle } from "../lib/useTitle";
import { ProviderFormView } from "../providers/ProviderFormView";

/** Add a provider: common settings plus the ones its type takes. */
export function NewProvider() {
  useTitle("New provider");
  const navigate = useNavigate();
  return (
    <div className="page narrow">
      <h1>New provider</h1>
      <ProviderFormView
        mode="create"
        initial={NEW_PROVIDER}
        onSubmit={async (provider) => {
          const created = await createProvider(provider);
          navigate(`/providers/${encodeURIComponent(created?.name ?? provider.name)}`);
        }}
      />
    </div>
  );
}
