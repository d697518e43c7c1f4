package dev.lunar.intercept;

import java.lang.instrument.Instrumentation;
import java.lang.reflect.Array;
import java.lang.reflect.Constructor;
import java.lang.reflect.Field;
import java.lang.reflect.Method;
import java.security.Provider;
import java.security.Security;
import java.util.Map;
import java.util.Set;

/**
 * Puts a provider first. {@code Security.insertProviderAt} loads every configured provider
 * first (about 35 ms of a JVM's start here, SunPKCS11, XMLDSig, SunPCSC... included); the JDK's
 * own list is lazy, so when the JDK's internals are as expected (OpenJDK 11 to 25) the provider
 * goes in front of that list without loading anything, exactly as if java.security named it
 * first. Anything unexpected: {@code Security.insertProviderAt}.
 */
final class ProviderFirst {
    private static final String JCA = "sun.security.jca";

    private ProviderFirst() {}

    static void insert(Provider provider, Instrumentation inst) {
        try {
            if (inst != null && lazily(provider, inst)) {
                return;
            }
        } catch (Throwable ignored) {
            // the public way below
        }
        Security.insertProviderAt(provider, 1);
    }

    private static boolean lazily(Provider provider, Instrumentation inst) throws ReflectiveOperationException {
        Module base = Object.class.getModule();
        Module agent = ProviderFirst.class.getModule();
        if (!base.isOpen(JCA, agent)) {
            inst.redefineModule(base, Set.of(), Map.of(), Map.of(JCA, Set.of(agent)), Set.of(), Map.of());
        }
        Class<?> providers = Class.forName(JCA + ".Providers");
        Class<?> listClass = Class.forName(JCA + ".ProviderList");
        Class<?> configClass = Class.forName(JCA + ".ProviderConfig");
        Method threadList = providers.getDeclaredMethod("getThreadProviderList");
        Method get = providers.getDeclaredMethod("getSystemProviderList");
        Method set = providers.getDeclaredMethod("setSystemProviderList", listClass);
        Field configsField = listClass.getDeclaredField("configs");
        Constructor<?> newConfig = configClass.getDeclaredConstructor(Provider.class);
        Constructor<?> newList = listClass.getDeclaredConstructor(configsField.getType(), boolean.class);
        if (configsField.getType() != Array.newInstance(configClass, 0).getClass()
                || get.getReturnType() != listClass || threadList.getReturnType() != listClass) {
            return false;
        }
        for (java.lang.reflect.AccessibleObject o : new java.lang.reflect.AccessibleObject[] {
                threadList, get, set, configsField, newConfig, newList}) {
            o.setAccessible(true);
        }
        synchronized (providers) {
            if (threadList.invoke(null) != null) {
                return false;
            }
            Object list = get.invoke(null);
            Object[] configs = (Object[]) configsField.get(list);
            Object[] withOurs = (Object[]) Array.newInstance(configClass, configs.length + 1);
            withOurs[0] = newConfig.newInstance(provider);
            System.arraycopy(configs, 0, withOurs, 1, configs.length);
            // Not "all loaded": the others load when first asked for, as from java.security.
            set.invoke(null, newList.newInstance(withOurs, false));
        }
        return true;
    }
}
